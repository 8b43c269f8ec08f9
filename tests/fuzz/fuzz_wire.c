/* fuzz_wire.c - fuzz target for the wire format: fv_framer, fv_wire_decode, fv_vec_rx.
 *
 * Every byte a peer sends over the transport goes through these first. Each input is
 * used twice:
 *   1. as a byte stream fed to a framer (64 KiB frame cap), every frame decoded, and the
 *      vector messages among them driven through one fv_vec_rx (max_vec_elems 4096, so
 *      a destination is at most 16 KiB);
 *   2. minus its first 4 bytes (a seed's frame header), as one body for fv_wire_decode.
 * Properties (a violation abort()s): a refusal is FV_EPROTO, FV_EVERSION or FV_ETOOBIG,
 * never a local code such as FV_ENOMEM; a message that decodes re-encodes, the encoding is
 * exactly as long as the body it came from (the decoder takes only shortest encodings,
 * so the two differ at most in key order), it decodes again, and encoding that gives the
 * same bytes; a vector the receiver accepted, sent again with fv_vec_tx in the announced
 * chunk size, ends with the same digest. Everything is released (leaks are bugs).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const fv_wire_limits_t lim = {64u << 10, 4096};

/* Peer bytes are refused with a protocol code, never with a local one (a library
 * "out of memory" for a hostile body would blame the wrong side). */
static int decode_checked(const uint8_t *body, size_t len, fv_msg_t *m)
{
    int r = fv_wire_decode(body, len, &lim, m, NULL);
    if (r != 0 && r != FV_EPROTO && r != FV_EVERSION && r != FV_ETOOBIG)
        abort();
    return r;
}

static void check_reencode(const fv_msg_t *m, size_t body_len)
{
    fv_buf_t a = {0}, b = {0};
    fv_msg_t m2;
    if (fv_wire_encode(m, &lim, &a) != 0)
        abort(); /* a message that decoded must encode */
    if (a.len != FV_WIRE_HEADER_BYTES + body_len)
        abort(); /* one encoding per message, up to key order */
    if (fv_wire_decode(a.data + FV_WIRE_HEADER_BYTES, a.len - FV_WIRE_HEADER_BYTES, &lim, &m2,
                       NULL) != 0)
        abort(); /* what we write we must read */
    if (fv_wire_encode(&m2, &lim, &b) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort();
    fv_buf_free(&a);
    fv_buf_free(&b);
}

/* A receiver with its destination; the destination is allocated at vec_begin, after
 * fv_vec_rx_begin checked n_elems against lim. */
typedef struct vrx {
    fv_vec_rx_t rx;
    uint8_t *dst;
    uint32_t chunk_elems;
} vrx_t;

static void resend_and_compare(const vrx_t *v, const uint8_t sha256[32])
{
    fv_vec_tx_t tx;
    fv_msg_t m;
    if (fv_vec_tx_init(&tx, v->rx.id, v->rx.dtype, v->dst, v->rx.n_elems, v->chunk_elems, "fuzz") !=
        0)
        abort();
    int n_end = 0;
    while (fv_vec_tx_next(&tx, &m) == 1) {
        if (m.type != FV_MSG_VEC_END)
            continue;
        n_end++;
        if (memcmp(m.u.vec_end.sha256, sha256, 32) != 0)
            abort(); /* the digest is a function of the elements alone */
    }
    if (n_end != 1)
        abort();
    fv_vec_tx_close(&tx);
}

static void drive_vec(vrx_t *v, const fv_msg_t *m)
{
    switch (m->type) {
    case FV_MSG_VEC_BEGIN:
        free(v->dst);
        v->dst = NULL;
        if (fv_vec_rx_begin(&v->rx, m, &lim, NULL) != 0)
            return;
        if (v->rx.n_elems > lim.max_vec_elems)
            abort(); /* the cap held */
        v->dst = calloc((size_t)v->rx.n_elems, FV_VEC_ELEM_BYTES);
        if (v->dst == NULL)
            abort();
        v->chunk_elems = m->u.vec_begin.chunk_elems;
        return;
    case FV_MSG_VEC_CHUNK:
        if (v->dst != NULL)
            (void)fv_vec_rx_chunk(&v->rx, m, v->dst, NULL);
        else if (fv_vec_rx_chunk(&v->rx, m, NULL, NULL) == 0)
            abort(); /* no begin, so nothing to copy into: must be refused */
        return;
    case FV_MSG_VEC_END:
        if (fv_vec_rx_end(&v->rx, m, NULL) == 0)
            resend_and_compare(v, m->u.vec_end.sha256);
        return;
    default:
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_framer_t f;
    vrx_t v;
    memset(&v, 0, sizeof(v));
    fv_framer_init(&f, &lim);

    /* 1. the input as a stream */
    size_t pos = 0;
    for (;;) {
        size_t used = 0, blen = 0;
        const uint8_t *body = NULL;
        fv_msg_t m;
        int r = fv_framer_feed(&f, data + pos, size - pos, &used, &body, &blen, NULL);
        if (used > size - pos)
            abort();
        pos += used;
        if (r <= 0)
            break;
        if (blen == 0 || blen > lim.max_frame_bytes)
            abort();
        if (decode_checked(body, blen, &m) != 0)
            continue;
        check_reencode(&m, blen);
        drive_vec(&v, &m);
    }
    fv_framer_close(&f);
    free(v.dst);

    /* 2. the input (after a frame header's worth of bytes) as one body */
    if (size >= FV_WIRE_HEADER_BYTES) {
        fv_msg_t m;
        size_t n = size - FV_WIRE_HEADER_BYTES;
        if (decode_checked(data + FV_WIRE_HEADER_BYTES, n, &m) == 0)
            check_reencode(&m, n);
    }
    return 0;
}
