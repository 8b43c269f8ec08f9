/* vagg_wire.c - byte format of the validated-aggregation messages (fv_vagg.h, "Wire
 * format"), the context, the signatures and the payload AEAD.
 *
 * Decoding is against the layout of the round's U1: PROOF, PROOF_CT, FWD, VSHARE and
 * AGGSHARE have lengths both sides know, checked exactly; KEYLIST and SUMREQ carry a count
 * (<= n) checked against the exact remaining length before the array is allocated. Byte
 * fields are borrowed from the caller's buffer.
 */
#include "fv_vagg.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "secagg-int.h"

#define MAGIC "FVA1"
#define HDR 32 /* magic 4, type 1, pad 3, job 8, round 8, from 4, to 4 */
#define KEY_ENTRY (4 + FV_KX_PK_BYTES + FV_SIGN_BYTES)
#define SEED_CT (FV_VALID_SEED_BYTES + FV_AEAD_TAG_BYTES) /* a seeded holder's ciphertext */

int fv_vagg_msg_phase(uint8_t type)
{
    switch (type) {
    case FV_VAGG_MSG_ADVERTISE:
        return 0;
    case FV_VAGG_MSG_KEYLIST:
    case FV_VAGG_MSG_PROOF:
    case FV_VAGG_MSG_PROOF_CT:
        return 1;
    case FV_VAGG_MSG_FWD:
    case FV_VAGG_MSG_VSHARE:
        return 2;
    case FV_VAGG_MSG_SUMREQ:
    case FV_VAGG_MSG_AGGSHARE:
        return 3;
    default:
        return -1;
    }
}

int fv_vagg_msg_peek(const uint8_t *buf, size_t len, uint8_t *ret_type, uint32_t *ret_from)
{
    if (len < HDR || memcmp(buf, MAGIC, 4) != 0)
        return FV_EPROTO;
    *ret_type = buf[4];
    *ret_from = fv__get_u32(buf + 24);
    return 0;
}

size_t fv_vagg_max_message(const fv_valid_layout_t *l)
{
    size_t fwd = HDR + 8 + l->header_bytes + FV_SIGN_BYTES + l->payload_bytes + FV_AEAD_TAG_BYTES;
    size_t vsh = HDR + 8 + l->vshare_bytes, agg = HDR + l->aggshare_bytes;
    size_t mx = fwd > vsh ? fwd : vsh;
    return mx > agg ? mx : agg;
}

void fv_vagg_msg_close(fv_vagg_msg_t *m)
{
    free(m->keys);
    free(m->items);
    memset(m, 0, sizeof(*m));
}

static int need_layout(const fv_valid_layout_t *l, fv_diag_t *d)
{
    return l ? 0 : fv_diag_set(d, FV_EPROTO, "vagg message before the round's key list");
}

int fv_vagg_msg_decode(const uint8_t *buf, size_t len, const fv_valid_layout_t *l, uint32_t n,
                       fv_vagg_msg_t *ret, fv_diag_t *d)
{
    memset(ret, 0, sizeof(*ret));
    if (len < HDR || memcmp(buf, MAGIC, 4) != 0 || buf[5] || buf[6] || buf[7])
        return fv_diag_set(d, FV_EPROTO, "vagg message: %zu bytes, bad header", len);
    ret->type = buf[4];
    ret->job_id = fv__get_u64(buf + 8);
    ret->round = fv__get_u64(buf + 16);
    ret->from = fv__get_u32(buf + 24);
    ret->to = fv__get_u32(buf + 28);
    const uint8_t *p = buf + HDR;
    size_t rest = len - HDR;
    int rc;
    if (ret->type >= FV_VAGG_MSG_PROOF && ret->type != FV_VAGG_MSG_SUMREQ &&
        ret->type <= FV_VAGG_MSG_AGGSHARE && (rc = need_layout(l, d)) != 0)
        return rc;
    size_t ct = l ? l->payload_bytes + FV_AEAD_TAG_BYTES : 0;
    switch (ret->type) {
    case FV_VAGG_MSG_ADVERTISE:
        if (rest != FV_KX_PK_BYTES + FV_SIGN_BYTES)
            goto bad;
        ret->key.id = ret->from;
        memcpy(ret->key.c_pk, p, FV_KX_PK_BYTES);
        memcpy(ret->key.sig, p + FV_KX_PK_BYTES, FV_SIGN_BYTES);
        return 0;
    case FV_VAGG_MSG_KEYLIST: {
        if (rest < 4)
            goto bad;
        uint32_t c = fv__get_u32(p);
        if (c < 1 || c > n || rest - 4 != (size_t)c * KEY_ENTRY)
            goto bad;
        if (!(ret->keys = calloc(c, sizeof(*ret->keys))))
            return FV_ENOMEM;
        p += 4;
        for (uint32_t i = 0; i < c; i++, p += KEY_ENTRY) {
            ret->keys[i].id = fv__get_u32(p);
            memcpy(ret->keys[i].c_pk, p + 4, FV_KX_PK_BYTES);
            memcpy(ret->keys[i].sig, p + 4 + FV_KX_PK_BYTES, FV_SIGN_BYTES);
        }
        ret->count = c;
        return 0;
    }
    case FV_VAGG_MSG_PROOF:
        if (rest != l->header_bytes + FV_SIGN_BYTES)
            goto bad;
        ret->header = p;
        ret->sig = p + l->header_bytes;
        return 0;
    case FV_VAGG_MSG_PROOF_CT:
        if (rest != 4 + ct && rest != 4 + SEED_CT)
            goto bad;
        ret->item.peer = fv__get_u32(p);
        ret->item.data = p + 4;
        ret->item.len = rest - 4;
        return 0;
    case FV_VAGG_MSG_FWD:
        if (rest != 8 + l->header_bytes + FV_SIGN_BYTES + ct &&
            rest != 8 + l->header_bytes + FV_SIGN_BYTES + SEED_CT)
            goto bad;
        ct = rest - 8 - l->header_bytes - FV_SIGN_BYTES;
        ret->k = fv__get_u32(p);
        if (ret->k < 1 || ret->k > n)
            goto bad;
        ret->item.peer = fv__get_u32(p + 4);
        ret->item.header = p + 8;
        ret->item.sig = p + 8 + l->header_bytes;
        ret->item.data = p + 8 + l->header_bytes + FV_SIGN_BYTES;
        ret->item.len = ct;
        return 0;
    case FV_VAGG_MSG_VSHARE:
        if (rest < 8)
            goto bad;
        ret->item.peer = fv__get_u32(p);
        ret->item.status = (int32_t)fv__get_u32(p + 4);
        if (ret->item.status > 0 || ret->item.status < -20000)
            goto bad;
        if (rest != 8 + (ret->item.status == 0 ? l->vshare_bytes : 0))
            goto bad;
        if (ret->item.status == 0) {
            ret->item.data = p + 8;
            ret->item.len = l->vshare_bytes;
        }
        return 0;
    case FV_VAGG_MSG_SUMREQ: {
        if (rest < FV_HASH_BYTES + 4)
            goto bad;
        memcpy(ret->sum_id, p, FV_HASH_BYTES);
        uint32_t c = fv__get_u32(p + FV_HASH_BYTES);
        p += FV_HASH_BYTES + 4;
        if (c < 1 || c > n || rest - FV_HASH_BYTES - 4 != (size_t)c * 4)
            goto bad;
        if (!(ret->items = calloc(c, sizeof(*ret->items))))
            return FV_ENOMEM;
        for (uint32_t i = 0; i < c; i++)
            ret->items[i].peer = fv__get_u32(p + 4 * i);
        ret->count = c;
        return 0;
    }
    case FV_VAGG_MSG_AGGSHARE:
        if (rest != l->aggshare_bytes)
            goto bad;
        ret->data = p;
        ret->len = rest;
        return 0;
    default:
        return fv_diag_set(d, FV_EPROTO, "vagg message: unknown type %u", ret->type);
    }
bad:
    return fv_diag_set(d, FV_EPROTO, "vagg message type %u: %zu bytes do not match its layout",
                       buf[4], len);
}

int fv_vagg_msg_encode(const fv_vagg_msg_t *m, const fv_valid_layout_t *l, uint8_t **ret,
                       size_t *ret_len)
{
    size_t len = HDR, ct = l ? l->payload_bytes + FV_AEAD_TAG_BYTES : 0;
    bool layout_needed = m->type >= FV_VAGG_MSG_PROOF && m->type != FV_VAGG_MSG_SUMREQ;
    if (layout_needed && !l)
        return FV_EINVAL;
    switch (m->type) {
    case FV_VAGG_MSG_ADVERTISE:
        len += FV_KX_PK_BYTES + FV_SIGN_BYTES;
        break;
    case FV_VAGG_MSG_KEYLIST:
        len += 4 + (size_t)m->count * KEY_ENTRY;
        break;
    case FV_VAGG_MSG_PROOF:
        len += l->header_bytes + FV_SIGN_BYTES;
        break;
    case FV_VAGG_MSG_PROOF_CT:
        if (m->item.len != ct && m->item.len != SEED_CT)
            return FV_EINVAL;
        ct = m->item.len;
        len += 4 + ct;
        break;
    case FV_VAGG_MSG_FWD:
        if (m->item.len != ct && m->item.len != SEED_CT)
            return FV_EINVAL;
        ct = m->item.len;
        len += 8 + l->header_bytes + FV_SIGN_BYTES + ct;
        break;
    case FV_VAGG_MSG_VSHARE:
        if (m->item.status == 0 && m->item.len != l->vshare_bytes)
            return FV_EINVAL;
        len += 8 + (m->item.status == 0 ? l->vshare_bytes : 0);
        break;
    case FV_VAGG_MSG_SUMREQ:
        len += FV_HASH_BYTES + 4 + (size_t)m->count * 4;
        break;
    case FV_VAGG_MSG_AGGSHARE:
        if (m->len != l->aggshare_bytes)
            return FV_EINVAL;
        len += m->len;
        break;
    default:
        return FV_EINVAL;
    }
    uint8_t *b = calloc(1, len), *p = b + HDR;
    if (!b)
        return FV_ENOMEM;
    memcpy(b, MAGIC, 4);
    b[4] = m->type;
    fv__put_u64(b + 8, m->job_id);
    fv__put_u64(b + 16, m->round);
    fv__put_u32(b + 24, m->from);
    fv__put_u32(b + 28, m->to);
    switch (m->type) {
    case FV_VAGG_MSG_ADVERTISE:
        memcpy(p, m->key.c_pk, FV_KX_PK_BYTES);
        memcpy(p + FV_KX_PK_BYTES, m->key.sig, FV_SIGN_BYTES);
        break;
    case FV_VAGG_MSG_KEYLIST:
        fv__put_u32(p, m->count);
        p += 4;
        for (uint32_t i = 0; i < m->count; i++, p += KEY_ENTRY) {
            fv__put_u32(p, m->keys[i].id);
            memcpy(p + 4, m->keys[i].c_pk, FV_KX_PK_BYTES);
            memcpy(p + 4 + FV_KX_PK_BYTES, m->keys[i].sig, FV_SIGN_BYTES);
        }
        break;
    case FV_VAGG_MSG_PROOF:
        memcpy(p, m->header, l->header_bytes);
        memcpy(p + l->header_bytes, m->sig, FV_SIGN_BYTES);
        break;
    case FV_VAGG_MSG_PROOF_CT:
        fv__put_u32(p, m->item.peer);
        memcpy(p + 4, m->item.data, ct);
        break;
    case FV_VAGG_MSG_FWD:
        fv__put_u32(p, m->k);
        fv__put_u32(p + 4, m->item.peer);
        memcpy(p + 8, m->item.header, l->header_bytes);
        memcpy(p + 8 + l->header_bytes, m->item.sig, FV_SIGN_BYTES);
        memcpy(p + 8 + l->header_bytes + FV_SIGN_BYTES, m->item.data, ct);
        break;
    case FV_VAGG_MSG_VSHARE:
        fv__put_u32(p, m->item.peer);
        fv__put_u32(p + 4, (uint32_t)m->item.status);
        if (m->item.status == 0)
            memcpy(p + 8, m->item.data, l->vshare_bytes);
        break;
    case FV_VAGG_MSG_SUMREQ:
        memcpy(p, m->sum_id, FV_HASH_BYTES);
        fv__put_u32(p + FV_HASH_BYTES, m->count);
        p += FV_HASH_BYTES + 4;
        for (uint32_t i = 0; i < m->count; i++)
            fv__put_u32(p + 4 * i, m->items[i].peer);
        break;
    case FV_VAGG_MSG_AGGSHARE:
        memcpy(p, m->data, m->len);
        break;
    }
    *ret = b;
    *ret_len = len;
    return 0;
}

/* ---- context, signatures, AEAD ------------------------------------------------------------- */

uint32_t fv_vagg_threshold_for(const fv_vagg_params_t *p, uint32_t m)
{
    uint64_t scaled = ((uint64_t)p->threshold * m + p->n_clients - 1) / p->n_clients;
    uint32_t t = m / 2 + 1;
    if (scaled > t)
        t = (uint32_t)scaled;
    return t > m ? m : t;
}

void fv_vagg_ctx(const fv_vagg_params_t *p, uint32_t prover, const uint32_t *roster_ids,
                 const uint8_t *roster_cpks, uint32_t m, uint8_t ctx[FV_HASH_BYTES])
{
    static const char label[] = "fv-vagg ctx v1";
    uint8_t base[FV_HASH_BYTES], roster[FV_HASH_BYTES], b[4];
    fv_valid_context(p->federation, p->job_id, p->round, prover,
                     p->identity_pks + (size_t)prover * FV_SIGN_PK_BYTES, base);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    for (uint32_t i = 0; i < m; i++) {
        fv__put_u32(b, roster_ids[i]);
        crypto_hash_sha256_update(&st, b, 4);
        crypto_hash_sha256_update(&st, roster_cpks + (size_t)i * FV_KX_PK_BYTES, FV_KX_PK_BYTES);
    }
    crypto_hash_sha256_final(&st, roster);
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)label, sizeof(label));
    crypto_hash_sha256_update(&st, base, sizeof(base));
    crypto_hash_sha256_update(&st, roster, sizeof(roster));
    crypto_hash_sha256_final(&st, ctx);
}

static void ad_bytes(uint8_t ad[24], const fv_vagg_params_t *p, uint32_t u, uint32_t v)
{
    fv__put_u64(ad, p->job_id);
    fv__put_u64(ad + 8, p->round);
    fv__put_u32(ad + 16, u);
    fv__put_u32(ad + 20, v);
}

static void nonce_bytes(uint8_t nonce[FV_AEAD_NONCE_BYTES], const fv_vagg_params_t *p, uint32_t u,
                        uint32_t v)
{
    static const char label[] = "fv-vagg nonce v1";
    uint8_t buf[sizeof(label) - 1 + 24], h[FV_HASH_BYTES];
    memcpy(buf, label, sizeof(label) - 1);
    ad_bytes(buf + sizeof(label) - 1, p, u, v);
    fv_sha256(h, buf, sizeof(buf));
    memcpy(nonce, h, FV_AEAD_NONCE_BYTES);
}

int fv_vagg_seal(const fv_vagg_params_t *p, uint32_t u, uint32_t v,
                 const uint8_t key[FV_KX_KEY_BYTES], const uint8_t *payload, size_t len,
                 uint8_t *ct)
{
    uint8_t ad[24], nonce[FV_AEAD_NONCE_BYTES];
    ad_bytes(ad, p, u, v);
    nonce_bytes(nonce, p, u, v);
    return fv_aead_seal(ct, payload, len, ad, sizeof(ad), nonce, key);
}

int fv_vagg_open(const fv_vagg_params_t *p, uint32_t u, uint32_t v,
                 const uint8_t key[FV_KX_KEY_BYTES], const uint8_t *ct, size_t ct_len,
                 uint8_t *payload)
{
    uint8_t ad[24], nonce[FV_AEAD_NONCE_BYTES];
    ad_bytes(ad, p, u, v);
    nonce_bytes(nonce, p, u, v);
    return fv_aead_open(payload, ct, ct_len, ad, sizeof(ad), nonce, key);
}

/* label | job | round | u | tail into buf (64 + 20 + 32 bytes); its length. */
static size_t signed_bytes(const fv_vagg_params_t *p, const char *label, uint32_t u,
                           const uint8_t *tail, size_t tail_len, uint8_t *buf)
{
    size_t ll = strlen(label);
    memcpy(buf, label, ll);
    fv__put_u64(buf + ll, p->job_id);
    fv__put_u64(buf + ll + 8, p->round);
    fv__put_u32(buf + ll + 16, u);
    memcpy(buf + ll + 20, tail, tail_len);
    return ll + 20 + tail_len;
}

#define SIGNED_MAX (64 + 20 + FV_HASH_BYTES)

int fv_vagg_sign_adv(const fv_vagg_params_t *p, uint32_t u, const uint8_t c_pk[FV_KX_PK_BYTES],
                     const uint8_t sk[FV_SIGN_SK_BYTES], uint8_t sig[FV_SIGN_BYTES])
{
    uint8_t buf[SIGNED_MAX];
    return fv_sign(sig, buf, signed_bytes(p, "fv-vagg adv v1", u, c_pk, FV_KX_PK_BYTES, buf), sk);
}

int fv_vagg_sign_proof(const fv_vagg_params_t *p, uint32_t u, const uint8_t *header, size_t len,
                       const uint8_t sk[FV_SIGN_SK_BYTES], uint8_t sig[FV_SIGN_BYTES])
{
    uint8_t h[FV_HASH_BYTES], buf[SIGNED_MAX];
    fv_sha256(h, header, len);
    return fv_sign(sig, buf, signed_bytes(p, "fv-vagg proof v1", u, h, sizeof(h), buf), sk);
}

/* Verification twins (folder-private, used by vagg.c). */
int fv__vagg_verify_adv(const fv_vagg_params_t *p, uint32_t u, const uint8_t c_pk[FV_KX_PK_BYTES],
                        const uint8_t sig[FV_SIGN_BYTES]);
int fv__vagg_verify_proof(const fv_vagg_params_t *p, uint32_t u, const uint8_t *header, size_t len,
                          const uint8_t sig[FV_SIGN_BYTES]);

int fv__vagg_verify_adv(const fv_vagg_params_t *p, uint32_t u, const uint8_t c_pk[FV_KX_PK_BYTES],
                        const uint8_t sig[FV_SIGN_BYTES])
{
    uint8_t buf[SIGNED_MAX];
    return fv_sign_verify(sig, buf, signed_bytes(p, "fv-vagg adv v1", u, c_pk, FV_KX_PK_BYTES, buf),
                          p->identity_pks + (size_t)u * FV_SIGN_PK_BYTES);
}

int fv__vagg_verify_proof(const fv_vagg_params_t *p, uint32_t u, const uint8_t *header, size_t len,
                          const uint8_t sig[FV_SIGN_BYTES])
{
    uint8_t h[FV_HASH_BYTES], buf[SIGNED_MAX];
    fv_sha256(h, header, len);
    return fv_sign_verify(sig, buf, signed_bytes(p, "fv-vagg proof v1", u, h, sizeof(h), buf),
                          p->identity_pks + (size_t)u * FV_SIGN_PK_BYTES);
}
