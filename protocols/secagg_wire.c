/* secagg_wire.c - byte format of the SecAgg messages, and the outbox.
 *
 * Interim format (the msgpack frames of the transport come later): length-prefixed,
 * little-endian, fixed-size entries, so a decoder can check the exact length from the
 * header before it allocates anything. Every message:
 *
 *   offset size  field
 *   0      1     version (2; version 1 carried Ed25519 signatures in CONSIST/SIGLIST and
 *                is refused)
 *   1      1     type (fv_secagg_msg_type_t)
 *   2      1     phase: must equal fv_secagg_msg_phase(type)
 *   3      1     flags, 0
 *   4      8     job id
 *   12     8     round
 *   20     4     from (client id, or 0xffffffff = server)
 *   24     4     to   (client id, or 0xffffffff = server)
 *   28     4     count: number of entries that follow
 *   32     ...   count entries of the type's fixed size, then (SIGLIST only) a u32 m and
 *                m u32 ids; nothing after.
 *
 * Entries:
 *   ADVERTISE, KEYLIST  132 bytes: id u32, c_pk[32], s_pk[32], sig[64]   (ADVERTISE: 1)
 *   SHARES, SHARES_FWD  108 bytes: peer u32, ct[104] (XChaCha20-Poly1305 of an 88-byte
 *                       plaintext: b-share (x u32, 5 x u64) then s-share, same layout)
 *   MASKED              4 bytes: one uint32 word of y (count = dim)
 *   U3LIST              4 bytes: client id, strictly increasing
 *   CONSIST, SIGLIST    68 bytes: id u32, tag[64] (keyed BLAKE2b consistency tag; CONSIST:
 *                       id = recipient, one per neighbour in U3; SIGLIST: id = sender)
 *   UNMASK              49 bytes: peer u32, kind u8 (0 b, 1 s_sk), share (x u32, 5 x u64)
 *
 * Caps: count <= FV_SECAGG_MAX_CLIENTS for lists, <= FV_SECAGG_MAX_DIM for MASKED; the
 * semantic checks (sorted ids, membership, dim) belong to the state machines.
 */
#include "secagg-int.h"

#include <stdlib.h>

#include "fv_crypto.h"

int fv_secagg_msg_phase(uint8_t type)
{
    switch (type) {
    case FV_SECAGG_MSG_ADVERTISE:
        return 0;
    case FV_SECAGG_MSG_KEYLIST:
    case FV_SECAGG_MSG_SHARES:
        return 1;
    case FV_SECAGG_MSG_SHARES_FWD:
    case FV_SECAGG_MSG_MASKED:
        return 2;
    case FV_SECAGG_MSG_U3LIST:
    case FV_SECAGG_MSG_CONSIST:
        return 3;
    case FV_SECAGG_MSG_SIGLIST:
    case FV_SECAGG_MSG_UNMASK:
        return 4;
    default:
        return -1;
    }
}

static size_t entry_bytes(uint8_t type)
{
    switch (type) {
    case FV_SECAGG_MSG_ADVERTISE:
    case FV_SECAGG_MSG_KEYLIST:
        return FV__SECAGG_KEY_ENTRY_BYTES;
    case FV_SECAGG_MSG_SHARES:
    case FV_SECAGG_MSG_SHARES_FWD:
        return FV__SECAGG_CT_ENTRY_BYTES;
    case FV_SECAGG_MSG_MASKED:
    case FV_SECAGG_MSG_U3LIST:
        return 4;
    case FV_SECAGG_MSG_CONSIST:
    case FV_SECAGG_MSG_SIGLIST:
        return FV__SECAGG_SIG_ENTRY_BYTES;
    case FV_SECAGG_MSG_UNMASK:
        return FV__SECAGG_SHARE_ENTRY_BYTES;
    default:
        return 0;
    }
}

static uint32_t count_cap(uint8_t type)
{
    if (type == FV_SECAGG_MSG_MASKED)
        return FV_SECAGG_MAX_DIM;
    if (type == FV_SECAGG_MSG_ADVERTISE)
        return 1;
    return FV_SECAGG_MAX_CLIENTS;
}

void fv__secagg_put_header(uint8_t *p, uint8_t type, uint64_t job, uint64_t round, uint32_t from,
                           uint32_t to, uint32_t count)
{
    p[0] = FV__SECAGG_VERSION;
    p[1] = type;
    p[2] = (uint8_t)fv_secagg_msg_phase(type);
    p[3] = 0;
    fv__put_u64(p + 4, job);
    fv__put_u64(p + 12, round);
    fv__put_u32(p + 20, from);
    fv__put_u32(p + 24, to);
    fv__put_u32(p + 28, count);
}

void fv_secagg_msg_close(fv_secagg_msg_t *m)
{
    if (m == NULL)
        return;
    if (m->keys) {
        fv_crypto_wipe(m->keys, sizeof(*m->keys) * m->n_items);
        free(m->keys);
    }
    if (m->cts) {
        fv_crypto_wipe(m->cts, sizeof(*m->cts) * m->n_items);
        free(m->cts);
    }
    if (m->sigs) {
        fv_crypto_wipe(m->sigs, sizeof(*m->sigs) * m->n_items);
        free(m->sigs);
    }
    if (m->shares) {
        fv_crypto_wipe(m->shares, sizeof(*m->shares) * m->n_items);
        free(m->shares);
    }
    if (m->ids) {
        fv_crypto_wipe(m->ids, sizeof(*m->ids) * m->n_ids);
        free(m->ids);
    }
    memset(m, 0, sizeof(*m));
}

int fv_secagg_msg_decode(const uint8_t *buf, size_t len, fv_secagg_msg_t *ret, fv_diag_t *d)
{
    fv_secagg_msg_t m;
    memset(&m, 0, sizeof(m));
    if (buf == NULL || len < FV__SECAGG_HEADER_BYTES)
        return fv_diag_set(d, FV_EPROTO,
                           "secagg message: %zu bytes, shorter than the %d-byte header", len,
                           FV__SECAGG_HEADER_BYTES);
    if (buf[0] != FV__SECAGG_VERSION)
        return fv_diag_set(d, FV_EPROTO, "secagg message: version %u, expected %d", buf[0],
                           FV__SECAGG_VERSION);
    m.type = buf[1];
    m.phase = buf[2];
    int ph = fv_secagg_msg_phase(m.type);
    if (ph < 0)
        return fv_diag_set(d, FV_EPROTO, "secagg message: unknown type %u", m.type);
    if (m.phase != ph || buf[3] != 0)
        return fv_diag_set(d, FV_EPROTO, "secagg message: type %u with phase %u/flags %u", m.type,
                           m.phase, buf[3]);
    m.job_id = fv__get_u64(buf + 4);
    m.round = fv__get_u64(buf + 12);
    m.from = fv__get_u32(buf + 20);
    m.to = fv__get_u32(buf + 24);
    m.n_items = fv__get_u32(buf + 28);
    uint32_t cap = count_cap(m.type);
    if (m.n_items > cap || (cap == 1 && m.n_items != 1))
        return fv_diag_set(d, FV_EPROTO, "secagg message type %u: count %u over the cap %u", m.type,
                           m.n_items, cap);
    size_t body = (size_t)m.n_items * entry_bytes(m.type); /* <= 2^28 * 132: no overflow */
    size_t rest = len - FV__SECAGG_HEADER_BYTES;
    if (m.type == FV_SECAGG_MSG_SIGLIST) {
        if (rest < body + 4)
            return fv_diag_set(d, FV_EPROTO, "secagg SIGLIST truncated: %zu bytes", len);
        m.n_ids = fv__get_u32(buf + FV__SECAGG_HEADER_BYTES + body);
        if (m.n_ids > FV_SECAGG_MAX_CLIENTS)
            return fv_diag_set(d, FV_EPROTO, "secagg SIGLIST: %u requested ids over the cap",
                               m.n_ids);
        body += 4 + (size_t)m.n_ids * 4;
    }
    if (rest != body)
        return fv_diag_set(d, FV_EPROTO,
                           "secagg message type %u: %zu body bytes, expected %zu (truncated or "
                           "padded)",
                           m.type, rest, body);
    const uint8_t *p = buf + FV__SECAGG_HEADER_BYTES;
    size_t n = m.n_items;
    switch (m.type) {
    case FV_SECAGG_MSG_ADVERTISE:
    case FV_SECAGG_MSG_KEYLIST:
        if (n && (m.keys = calloc(n, sizeof(*m.keys))) == NULL)
            return FV_ENOMEM;
        for (size_t i = 0; i < n; i++, p += FV__SECAGG_KEY_ENTRY_BYTES) {
            m.keys[i].id = fv__get_u32(p);
            memcpy(m.keys[i].c_pk, p + 4, 32);
            memcpy(m.keys[i].s_pk, p + 36, 32);
            memcpy(m.keys[i].sig, p + 68, 64);
        }
        break;
    case FV_SECAGG_MSG_SHARES:
    case FV_SECAGG_MSG_SHARES_FWD:
        if (n && (m.cts = calloc(n, sizeof(*m.cts))) == NULL)
            return FV_ENOMEM;
        for (size_t i = 0; i < n; i++, p += FV__SECAGG_CT_ENTRY_BYTES) {
            m.cts[i].peer = fv__get_u32(p);
            memcpy(m.cts[i].ct, p + 4, FV_SECAGG_CT_BYTES);
        }
        break;
    case FV_SECAGG_MSG_MASKED:
        m.words_le = p;
        break;
    case FV_SECAGG_MSG_U3LIST:
        m.n_ids = m.n_items;
        if (n && (m.ids = calloc(n, sizeof(*m.ids))) == NULL)
            return FV_ENOMEM;
        for (size_t i = 0; i < n; i++)
            m.ids[i] = fv__get_u32(p + 4 * i);
        break;
    case FV_SECAGG_MSG_CONSIST:
    case FV_SECAGG_MSG_SIGLIST:
        if (n && (m.sigs = calloc(n, sizeof(*m.sigs))) == NULL)
            return FV_ENOMEM;
        for (size_t i = 0; i < n; i++, p += FV__SECAGG_SIG_ENTRY_BYTES) {
            m.sigs[i].id = fv__get_u32(p);
            memcpy(m.sigs[i].sig, p + 4, 64);
        }
        if (m.type == FV_SECAGG_MSG_SIGLIST) {
            p += 4;
            if (m.n_ids && (m.ids = calloc(m.n_ids, sizeof(*m.ids))) == NULL) {
                fv_secagg_msg_close(&m);
                return FV_ENOMEM;
            }
            for (size_t i = 0; i < m.n_ids; i++)
                m.ids[i] = fv__get_u32(p + 4 * i);
        }
        break;
    case FV_SECAGG_MSG_UNMASK:
        if (n && (m.shares = calloc(n, sizeof(*m.shares))) == NULL)
            return FV_ENOMEM;
        for (size_t i = 0; i < n; i++, p += FV__SECAGG_SHARE_ENTRY_BYTES) {
            m.shares[i].peer = fv__get_u32(p);
            m.shares[i].kind = p[4];
            memcpy(m.shares[i].share, p + 5, FV_SECAGG_SHARE_WIRE_BYTES);
        }
        break;
    }
    *ret = m;
    return 0;
}

int fv_secagg_msg_encode(const fv_secagg_msg_t *m, uint8_t **ret_buf, size_t *ret_len)
{
    int ph = fv_secagg_msg_phase(m->type);
    if (ph < 0 || m->n_items > count_cap(m->type))
        return FV_EINVAL;
    size_t n = m->n_items;
    size_t len = FV__SECAGG_HEADER_BYTES + n * entry_bytes(m->type);
    if (m->type == FV_SECAGG_MSG_SIGLIST)
        len += 4 + (size_t)m->n_ids * 4;
    uint8_t *buf = malloc(len);
    if (buf == NULL)
        return FV_ENOMEM;
    fv__secagg_put_header(buf, m->type, m->job_id, m->round, m->from, m->to, m->n_items);
    buf[2] = m->phase; /* as given: tests craft wrong phases through the decoder's check */
    uint8_t *p = buf + FV__SECAGG_HEADER_BYTES;
    int rc = FV_EINVAL;
    switch (m->type) {
    case FV_SECAGG_MSG_ADVERTISE:
    case FV_SECAGG_MSG_KEYLIST:
        if (n && m->keys == NULL)
            goto fail;
        for (size_t i = 0; i < n; i++, p += FV__SECAGG_KEY_ENTRY_BYTES) {
            fv__put_u32(p, m->keys[i].id);
            memcpy(p + 4, m->keys[i].c_pk, 32);
            memcpy(p + 36, m->keys[i].s_pk, 32);
            memcpy(p + 68, m->keys[i].sig, 64);
        }
        break;
    case FV_SECAGG_MSG_SHARES:
    case FV_SECAGG_MSG_SHARES_FWD:
        if (n && m->cts == NULL)
            goto fail;
        for (size_t i = 0; i < n; i++, p += FV__SECAGG_CT_ENTRY_BYTES) {
            fv__put_u32(p, m->cts[i].peer);
            memcpy(p + 4, m->cts[i].ct, FV_SECAGG_CT_BYTES);
        }
        break;
    case FV_SECAGG_MSG_MASKED:
        if (n && m->words_le == NULL)
            goto fail;
        if (n)
            memcpy(p, m->words_le, 4 * n);
        break;
    case FV_SECAGG_MSG_U3LIST:
        if (n && m->ids == NULL)
            goto fail;
        for (size_t i = 0; i < n; i++)
            fv__put_u32(p + 4 * i, m->ids[i]);
        break;
    case FV_SECAGG_MSG_CONSIST:
    case FV_SECAGG_MSG_SIGLIST:
        if (n && m->sigs == NULL)
            goto fail;
        for (size_t i = 0; i < n; i++, p += FV__SECAGG_SIG_ENTRY_BYTES) {
            fv__put_u32(p, m->sigs[i].id);
            memcpy(p + 4, m->sigs[i].sig, 64);
        }
        if (m->type == FV_SECAGG_MSG_SIGLIST) {
            if (m->n_ids && m->ids == NULL)
                goto fail;
            fv__put_u32(p, m->n_ids);
            p += 4;
            for (size_t i = 0; i < m->n_ids; i++)
                fv__put_u32(p + 4 * i, m->ids[i]);
        }
        break;
    case FV_SECAGG_MSG_UNMASK:
        if (n && m->shares == NULL)
            goto fail;
        for (size_t i = 0; i < n; i++, p += FV__SECAGG_SHARE_ENTRY_BYTES) {
            fv__put_u32(p, m->shares[i].peer);
            p[4] = m->shares[i].kind;
            memcpy(p + 5, m->shares[i].share, FV_SECAGG_SHARE_WIRE_BYTES);
        }
        break;
    }
    *ret_buf = buf;
    *ret_len = len;
    return 0;
fail:
    free(buf);
    return rc;
}

/* ---- outbox ---------------------------------------------------------------------------- */
void fv_secagg_outbox_init(fv_secagg_outbox_t *o)
{
    memset(o, 0, sizeof(*o));
}

void fv_secagg_outbox_clear(fv_secagg_outbox_t *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->msgs[i].data);
    o->n = 0;
}

void fv_secagg_outbox_close(fv_secagg_outbox_t *o)
{
    fv_secagg_outbox_clear(o);
    free(o->msgs);
    memset(o, 0, sizeof(*o));
}

int fv__secagg_outbox_push(fv_secagg_outbox_t *o, uint32_t to, uint8_t *data, size_t len)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        fv_secagg_outmsg_t *m = realloc(o->msgs, cap * sizeof(*m));
        if (m == NULL) {
            free(data);
            return FV_ENOMEM;
        }
        o->msgs = m;
        o->cap = cap;
    }
    o->msgs[o->n].to = to;
    o->msgs[o->n].data = data;
    o->msgs[o->n].len = len;
    o->n++;
    return 0;
}
