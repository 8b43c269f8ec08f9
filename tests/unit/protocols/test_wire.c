/* test_wire.c - the wire format (fv_wire.h): frames, messages, framer, chunked vectors.
 *
 * Known-answer frames were written by hand from the msgpack spec (see each vector's
 * comment) and are checked in both directions. The refusal tests build bodies with a
 * small msgpack writer of their own (mb_*), independent of msgpack-c, from a table of
 * every message's fields, and derive one bad body per field and per fault: missing,
 * duplicated, wrong msgpack type, plus an unknown key. Fixed seeds; no clock.
 */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_test.h"
#include "fv_wire.h"

static fv_wire_limits_t deflim(void)
{
    fv_wire_limits_t l;
    fv_wire_limits_default(&l);
    return l;
}

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = h; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        unsigned v;
        CHECK(n < cap);
        CHECK(sscanf(p, "%2x", &v) == 1);
        out[n++] = (uint8_t)v;
        p += 2;
    }
    return n;
}

static void check_bytes(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    if (na != nb || memcmp(a, b, na) != 0) {
        fprintf(stderr, "got      (%zu):", na);
        for (size_t i = 0; i < na; i++)
            fprintf(stderr, " %02x", a[i]);
        fprintf(stderr, "\nexpected (%zu):", nb);
        for (size_t i = 0; i < nb; i++)
            fprintf(stderr, " %02x", b[i]);
        fputc('\n', stderr);
        FV__FAIL("byte strings differ");
    }
}

static fv_wire_str_t S(const char *s)
{
    fv_wire_str_t r = {s, strlen(s)};
    return r;
}

/* Decodes the body of one whole frame (header checked against its length). */
static int decode_frame(const uint8_t *f, size_t n, const fv_wire_limits_t *lim, fv_msg_t *m,
                        fv_diag_t *d)
{
    uint32_t len = 0;
    CHECK(n >= FV_WIRE_HEADER_BYTES);
    CHECK_OK(fv_wire_frame_len(f, lim, &len, d), d);
    CHECK_UINT_EQ(len, n - FV_WIRE_HEADER_BYTES);
    return fv_wire_decode(f + FV_WIRE_HEADER_BYTES, len, lim, m, d);
}

static bool str_eq(fv_wire_str_t a, fv_wire_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool bytes_eq(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

/* An optional "model": equal presence, and the hash when present. */
static bool opt_hash_eq(bool ha, const uint8_t *a, bool hb, const uint8_t *b)
{
    return ha == hb && (!ha || memcmp(a, b, 32) == 0);
}

static bool msg_eq(const fv_msg_t *a, const fv_msg_t *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case FV_MSG_HELLO:
        return str_eq(a->u.hello.sw, b->u.hello.sw) &&
               a->u.hello.max_frame_bytes == b->u.hello.max_frame_bytes;
    case FV_MSG_ERROR:
        return a->u.error.code == b->u.error.code && str_eq(a->u.error.reason, b->u.error.reason);
    case FV_MSG_PING:
    case FV_MSG_PONG:
        return a->u.ping.seq == b->u.ping.seq;
    case FV_MSG_BYE:
        return str_eq(a->u.bye.reason, b->u.bye.reason);
    case FV_MSG_ECHO:
    case FV_MSG_ECHO_REPLY:
        return a->u.echo.seq == b->u.echo.seq && a->u.echo.body_len == b->u.echo.body_len &&
               (a->u.echo.body_len == 0 ||
                memcmp(a->u.echo.body, b->u.echo.body, a->u.echo.body_len) == 0);
    case FV_MSG_VEC_BEGIN:
        return a->u.vec_begin.id == b->u.vec_begin.id &&
               a->u.vec_begin.dtype == b->u.vec_begin.dtype &&
               a->u.vec_begin.n_elems == b->u.vec_begin.n_elems &&
               a->u.vec_begin.chunk_elems == b->u.vec_begin.chunk_elems &&
               str_eq(a->u.vec_begin.name, b->u.vec_begin.name);
    case FV_MSG_VEC_CHUNK:
        return a->u.vec_chunk.id == b->u.vec_chunk.id && a->u.vec_chunk.seq == b->u.vec_chunk.seq &&
               a->u.vec_chunk.len == b->u.vec_chunk.len &&
               memcmp(a->u.vec_chunk.data, b->u.vec_chunk.data, a->u.vec_chunk.len) == 0;
    case FV_MSG_VEC_END:
    case FV_MSG_VEC_ACK:
        return a->u.vec_end.id == b->u.vec_end.id &&
               memcmp(a->u.vec_end.sha256, b->u.vec_end.sha256, 32) == 0;
    case FV_MSG_JOB_OFFER:
        return memcmp(a->u.job_offer.job, b->u.job_offer.job, 32) == 0 &&
               bytes_eq(a->u.job_offer.spec, a->u.job_offer.spec_len, b->u.job_offer.spec,
                        b->u.job_offer.spec_len) &&
               bytes_eq(a->u.job_offer.crl, a->u.job_offer.crl_len, b->u.job_offer.crl,
                        b->u.job_offer.crl_len);
    case FV_MSG_JOB_ACCEPT:
        return memcmp(a->u.job_accept.job, b->u.job_accept.job, 32) == 0 &&
               memcmp(a->u.job_accept.data_sha256, b->u.job_accept.data_sha256, 32) == 0 &&
               a->u.job_accept.rows == b->u.job_accept.rows &&
               opt_hash_eq(a->u.job_accept.has_model, a->u.job_accept.model,
                           b->u.job_accept.has_model, b->u.job_accept.model);
    case FV_MSG_JOB_REFUSE:
        return memcmp(a->u.job_refuse.job, b->u.job_refuse.job, 32) == 0 &&
               str_eq(a->u.job_refuse.reason, b->u.job_refuse.reason) &&
               a->u.job_refuse.category == b->u.job_refuse.category;
    case FV_MSG_ROUND_START: {
        const __typeof__(a->u.round_start) *x = &a->u.round_start, *y = &b->u.round_start;
        return memcmp(x->job, y->job, 32) == 0 && x->round == y->round && x->kind == y->kind &&
               x->index == y->index && x->n == y->n && x->t == y->t && x->k == y->k &&
               memcmp(x->gseed, y->gseed, 32) == 0 &&
               bytes_eq(x->pks, x->pks_len, y->pks, y->pks_len) &&
               opt_hash_eq(x->has_model, x->model, y->has_model, y->model) &&
               x->n_ref == y->n_ref && bytes_eq(x->certs, x->certs_len, y->certs, y->certs_len);
    }
    case FV_MSG_SECAGG:
        return memcmp(a->u.secagg.job, b->u.secagg.job, 32) == 0 &&
               a->u.secagg.round == b->u.secagg.round &&
               bytes_eq(a->u.secagg.data, a->u.secagg.len, b->u.secagg.data, b->u.secagg.len);
    case FV_MSG_UPLOAD_GO:
        return memcmp(a->u.upload_go.job, b->u.upload_go.job, 32) == 0 &&
               a->u.upload_go.round == b->u.upload_go.round;
    case FV_MSG_ROUND_END:
        return memcmp(a->u.round_end.job, b->u.round_end.job, 32) == 0 &&
               a->u.round_end.round == b->u.round_end.round &&
               a->u.round_end.status == b->u.round_end.status &&
               str_eq(a->u.round_end.reason, b->u.round_end.reason);
    case FV_MSG_JOB_DONE:
        return memcmp(a->u.job_done.job, b->u.job_done.job, 32) == 0 &&
               a->u.job_done.rounds == b->u.job_done.rounds &&
               memcmp(a->u.job_done.model, b->u.job_done.model, 32) == 0;
    case FV_MSG_ADMIN_REQ:
        return a->u.admin_req.id == b->u.admin_req.id &&
               str_eq(a->u.admin_req.cmd, b->u.admin_req.cmd) &&
               str_eq(a->u.admin_req.args, b->u.admin_req.args);
    case FV_MSG_ADMIN_RESP:
        return a->u.admin_resp.id == b->u.admin_resp.id &&
               a->u.admin_resp.status == b->u.admin_resp.status &&
               str_eq(a->u.admin_resp.body, b->u.admin_resp.body) &&
               bytes_eq(a->u.admin_resp.data, a->u.admin_resp.data_len, b->u.admin_resp.data,
                        b->u.admin_resp.data_len);
    case FV_MSG_RECEIPT:
        return memcmp(a->u.receipt.job, b->u.receipt.job, 32) == 0 &&
               a->u.receipt.round == b->u.receipt.round &&
               str_eq(a->u.receipt.body, b->u.receipt.body) &&
               memcmp(a->u.receipt.sig, b->u.receipt.sig, 64) == 0;
    case FV_MSG_RELEASE:
        return str_eq(a->u.release.body, b->u.release.body);
    case FV_MSG_RELEASE_SYNC:
        return a->u.release_sync.n == b->u.release_sync.n &&
               bytes_eq(a->u.release_sync.crl, a->u.release_sync.crl_len, b->u.release_sync.crl,
                        b->u.release_sync.crl_len);
    case FV_MSG_FETCH:
        return memcmp(a->u.fetch.sha256, b->u.fetch.sha256, 32) == 0;
    case FV_MSG_FILE_CHUNK:
        return memcmp(a->u.file_chunk.sha256, b->u.file_chunk.sha256, 32) == 0 &&
               a->u.file_chunk.offset == b->u.file_chunk.offset &&
               a->u.file_chunk.total == b->u.file_chunk.total &&
               bytes_eq(a->u.file_chunk.data, a->u.file_chunk.len, b->u.file_chunk.data,
                        b->u.file_chunk.len);
    case FV_MSG_FETCH_FAIL:
        return memcmp(a->u.fetch_fail.sha256, b->u.fetch_fail.sha256, 32) == 0 &&
               str_eq(a->u.fetch_fail.reason, b->u.fetch_fail.reason);
    case FV_MSG_SCHEMA_QUERY:
        return memcmp(a->u.schema_query.job, b->u.schema_query.job, 32) == 0 &&
               bytes_eq(a->u.schema_query.spec, a->u.schema_query.spec_len, b->u.schema_query.spec,
                        b->u.schema_query.spec_len);
    case FV_MSG_SCHEMA_VOCAB:
        return memcmp(a->u.schema_vocab.job, b->u.schema_vocab.job, 32) == 0 &&
               a->u.schema_vocab.status == b->u.schema_vocab.status &&
               str_eq(a->u.schema_vocab.category, b->u.schema_vocab.category) &&
               str_eq(a->u.schema_vocab.body, b->u.schema_vocab.body);
    }
    return false;
}

/* ---- known answers ----------------------------------------------------------------------- */

static void kat(const fv_msg_t *m, const char *hex)
{
    fv_wire_limits_t lim = deflim();
    lim.max_vec_elems = FV_WIRE_VEC_ELEMS_CEILING;
    uint8_t want[512];
    size_t nw = unhex(hex, want, sizeof(want));
    fv_buf_t out = {0};
    CHECK_OK(fv_wire_encode(m, &lim, &out), NULL);
    check_bytes(out.data, out.len, want, nw);
    fv_msg_t back;
    fv_diag_t d = {""};
    CHECK_OK(decode_frame(want, nw, &lim, &back, &d), &d);
    CHECK(msg_eq(m, &back));
    fv_buf_free(&out);
}

static void test_known_answers(void)
{
    fv_msg_t m;

    /* ping seq 5: fixmap(3); "v" 1; "type" 3; "seq" positive fixint 5. Body 15 bytes. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_PING;
    m.u.ping.seq = 5;
    kat(&m, "0000000f 83 a176 01 a474797065 03 a3736571 05");

    /* error -10014 "bad": code needs int16 (0xd1), -10014 = 0xd8e2 two's complement. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ERROR;
    m.u.error.code = -10014;
    m.u.error.reason = S("bad");
    kat(&m, "0000001d 84 a176 01 a474797065 02 a4636f6465 d1d8e2 a6726561736f6e a3626164");

    /* error -4: negative fixint 0xfc; empty reason: fixstr 0xa0. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ERROR;
    m.u.error.code = -4;
    m.u.error.reason = S("");
    kat(&m, "00000018 84 a176 01 a474797065 02 a4636f6465 fc a6726561736f6e a0");

    /* hello "fv", maxf 4 MiB = 0x00400000: uint32 (0xce). */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_HELLO;
    m.u.hello.sw = S("fv");
    m.u.hello.max_frame_bytes = 4u << 20;
    kat(&m, "0000001a 84 a176 01 a474797065 01 a27377 a26676 a46d617866 ce00400000");

    /* vec_chunk id 300 (uint16 0xcd 012c), seq 0, data bin8 of 8 bytes (1u, 2u LE). */
    memset(&m, 0, sizeof(m));
    static const uint8_t data[8] = {1, 0, 0, 0, 2, 0, 0, 0};
    m.type = FV_MSG_VEC_CHUNK;
    m.u.vec_chunk.id = 300;
    m.u.vec_chunk.seq = 0;
    m.u.vec_chunk.data = data;
    m.u.vec_chunk.len = 8;
    kat(&m, "00000024 85 a176 01 a474797065 09 a26964 cd012c a3736571 00 a464617461 c408 "
            "0100000002000000");

    /* vec_begin id 7, f32, n 2^32 (uint64 0xcf), chunk 1024 (uint16), name 32 x 'x':
     * 32 bytes no longer fit a fixstr, so str8 (0xd9 0x20). Body 80 bytes. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_VEC_BEGIN;
    m.u.vec_begin.id = 7;
    m.u.vec_begin.dtype = FV_VEC_F32;
    m.u.vec_begin.n_elems = 1ull << 32;
    m.u.vec_begin.chunk_elems = 1024;
    m.u.vec_begin.name = S("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    kat(&m, "00000050 87 a176 01 a474797065 08 a26964 07 a56474797065 01 a16e cf0000000100000000 "
            "a56368756e6b cd0400 a46e616d65 d920 "
            "7878787878787878787878787878787878787878787878787878787878787878");

    /* vec_end id 0, sha256 = 00 01 .. 1f: bin8 of 32 bytes. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_VEC_END;
    for (int i = 0; i < 32; i++)
        m.u.vec_end.sha256[i] = (uint8_t)i;
    kat(&m, "00000037 84 a176 01 a474797065 0a a26964 00 a6736861323536 c420 "
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

    /* The round protocol. "job" is bin8 of 32 bytes (c4 20 + 32) in every one. */
#define J32 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define R32(b) b b b b b b b b b b b b b b b b b b b b b b b b b b b b b b b b

    /* upload_go (wire.c's example): 4 pairs; round 300 = uint16 cd 012c. Body 1 + 3 + 6 +
     * 38 + 9 = 57 = 0x39. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_UPLOAD_GO;
    for (int i = 0; i < 32; i++)
        m.u.upload_go.job[i] = (uint8_t)i;
    m.u.upload_go.round = 300;
    kat(&m, "00000039 84 a176 01 a474797065 11 a36a6f62 c420" J32 "a5726f756e64 cd012c");

    /* job_done 19 (0x13): job, "rounds" 300, "model" bin8 of 32 x ff. 5 pairs; body
     * 1 + 3 + 6 + 38 + (7 + 3) + (6 + 2 + 32) = 98 = 0x62. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_JOB_DONE;
    for (int i = 0; i < 32; i++)
        m.u.job_done.job[i] = (uint8_t)i;
    m.u.job_done.rounds = 300;
    memset(m.u.job_done.model, 0xff, 32);
    kat(&m, "00000062 85 a176 01 a474797065 13 a36a6f62 c420" J32 "a6726f756e6473 cd012c "
            "a56d6f64656c c420" R32("ff"));

    /* round_end 18 (0x12), status 0: positive fixint 00 (its shortest form, not a negative
     * int format), reason "" (a0). 6 pairs; body 1+3+6+38+7+8+8 = 71 = 0x47. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ROUND_END;
    for (int i = 0; i < 32; i++)
        m.u.round_end.job[i] = (uint8_t)i;
    m.u.round_end.round = 5;
    m.u.round_end.status = 0;
    m.u.round_end.reason = S("");
    kat(&m, "00000047 86 a176 01 a474797065 12 a36a6f62 c420" J32 "a5726f756e64 05 "
            "a6737461747573 00 a6726561736f6e a0");
    /* status INT32_MIN: int32 d2 80000000; reason "bad". Body 71 + 4 + 3 = 78 = 0x4e. */
    m.u.round_end.status = INT32_MIN;
    m.u.round_end.reason = S("bad");
    kat(&m, "0000004e 86 a176 01 a474797065 12 a36a6f62 c420" J32 "a5726f756e64 05 "
            "a6737461747573 d280000000 a6726561736f6e a3626164");

    /* job_accept 13 (0x0d) without a model: "model" is bin8 of 0 bytes (c4 00); "dsha"
     * 32 x 0x5d; rows 0. 6 pairs; body 1+3+6+38+39+6+8 = 101 = 0x65. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_JOB_ACCEPT;
    for (int i = 0; i < 32; i++)
        m.u.job_accept.job[i] = (uint8_t)i;
    memset(m.u.job_accept.data_sha256, 0x5d, 32);
    m.u.job_accept.has_model = false;
    kat(&m, "00000065 86 a176 01 a474797065 0d a36a6f62 c420" J32
            "a464736861 c420" R32("5d") "a4726f7773 00 a56d6f64656c c400");

    /* round_start 15 (0x0f): 14 pairs, fixmap 8e. job 32 x aa; round 1; kind 2; index 2;
     * n 3; t 2; k 2 (each a positive fixint); gseed 32 x 55; pks bin8 of 96 bytes (c4 60:
     * 32 x 01, 32 x 02, 32 x 03); model 32 x 77; nref 70000 = 0x11170: uint32 ce 00011170;
     * certs empty (a5 6365727473 c400). Body 1 + 3 + 6 + 38 (job) + 7 (round) + 6 (kind)
     * + 7 (index) + 3 + 3 + 3 (n, t, k) + 40 (gseed) + 102 (pks) + 40 (model) + 10 (nref)
     * + 8 (certs) = 277 = 0x115. */
    static uint8_t pks[96];
    for (int i = 0; i < 96; i++)
        pks[i] = (uint8_t)(1 + i / 32);
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ROUND_START;
    memset(m.u.round_start.job, 0xaa, 32);
    m.u.round_start.round = 1;
    m.u.round_start.kind = 2;
    m.u.round_start.index = 2;
    m.u.round_start.n = 3;
    m.u.round_start.t = 2;
    m.u.round_start.k = 2;
    memset(m.u.round_start.gseed, 0x55, 32);
    m.u.round_start.pks = pks;
    m.u.round_start.pks_len = sizeof(pks);
    m.u.round_start.has_model = true;
    memset(m.u.round_start.model, 0x77, 32);
    m.u.round_start.n_ref = 70000;
    kat(&m, "00000115 8e a176 01 a474797065 0f a36a6f62 c420" R32(
                "aa") "a5726f756e64 01 "
                      "a46b696e64 02 a5696e646578 02 a16e 03 a174 02 a16b 02 a56773656564 c420" R32(
                          "55") "a3706b73 c460" R32("01") R32("02")
                          R32("03") "a56d6f64656c c420" R32("77") "a46e726566 ce00011170 "
                                                                  "a56365727473 c400");
    /* the same with certs: 3 entries of 1, 2 and 3 bytes (00 01 c1, 00 02 c2 c2, 00 03 c3
     * c3 c3): bin8 of 12 bytes (c4 0c). Body 277 + 12 = 289 = 0x121. */
    static const uint8_t certs3[12] = {0, 1, 0xc1, 0, 2, 0xc2, 0xc2, 0, 3, 0xc3, 0xc3, 0xc3};
    m.u.round_start.certs = certs3;
    m.u.round_start.certs_len = sizeof certs3;
    kat(&m, "00000121 8e a176 01 a474797065 0f a36a6f62 c420" R32(
                "aa") "a5726f756e64 01 "
                      "a46b696e64 02 a5696e646578 02 a16e 03 a174 02 a16b 02 a56773656564 c420" R32(
                          "55") "a3706b73 c460" R32("01") R32("02")
                          R32("03") "a56d6f64656c c420" R32(
                              "77") "a46e726566 ce00011170 "
                                    "a56365727473 c40c 0001c1 0002c2c2 0003c3c3c3");
    {
        const uint8_t *der = NULL;
        size_t len = 0;
        CHECK_OK(fv_wire_cert_at(certs3, sizeof certs3, 2, &der, &len), NULL);
        CHECK_UINT_EQ(len, 3);
        CHECK(der == certs3 + 9);
        CHECK_OK(fv_wire_cert_at(certs3, sizeof certs3, 0, &der, &len), NULL);
        CHECK(len == 1 && der == certs3 + 2);
        CHECK_INT_EQ(fv_wire_cert_at(certs3, sizeof certs3, 3, &der, &len), FV_EPROTO);
        CHECK_INT_EQ(fv_wire_cert_at(certs3, 11, 2, &der, &len), FV_EPROTO); /* truncated */
        CHECK_INT_EQ(fv_wire_cert_at(NULL, 0, 0, &der, &len), FV_EPROTO);
    }

    /* job_offer 12 (0x0c) with a CRL: job 00..1f; spec "{}" (c4 02 7b7d); crl 3 bytes
     * 30 01 00 (c4 03). 5 pairs; body 1 + 3 + 6 + 38 + 9 + 9 = 66 = 0x42. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_JOB_OFFER;
    for (int i = 0; i < 32; i++)
        m.u.job_offer.job[i] = (uint8_t)i;
    m.u.job_offer.spec = (const uint8_t *)"{}";
    m.u.job_offer.spec_len = 2;
    m.u.job_offer.crl = (const uint8_t *)"\x30\x01\x00";
    m.u.job_offer.crl_len = 3;
    kat(&m, "00000042 85 a176 01 a474797065 0c a36a6f62 c420" J32
            "a473706563 c4027b7d a363726c c403300100");

    /* The admin exchange. admin_req 20 (0x14): id 7, cmd "status" (fixstr a6), args ""
     * (a0). 5 pairs; body 1 + 3 + 6 + (3 + 1) + (4 + 7) + (5 + 1) = 31 = 0x1f. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ADMIN_REQ;
    m.u.admin_req.id = 7;
    m.u.admin_req.cmd = S("status");
    m.u.admin_req.args = S("");
    kat(&m, "0000001f 85 a176 01 a474797065 14 a26964 07 a3636d64 a6737461747573 "
            "a461726773 a0");
    /* id 300 (uint16 cd 012c), cmd "job.show" (a8), args {"id":"ab"} (11 bytes, ab).
     * Body 1 + 3 + 6 + (3 + 3) + (4 + 9) + (5 + 12) = 46 = 0x2e. */
    m.u.admin_req.id = 300;
    m.u.admin_req.cmd = S("job.show");
    m.u.admin_req.args = S("{\"id\":\"ab\"}");
    kat(&m, "0000002e 85 a176 01 a474797065 14 a26964 cd012c a3636d64 a86a6f622e73686f77 "
            "a461726773 ab7b226964223a226162227d");

    /* admin_resp 21 (0x15): id 7, status 0 (positive fixint 00), body {"a":1} (a7), data
     * empty (bin8 c4 00). 6 pairs; body 1 + 3 + 6 + 4 + (7 + 1) + (5 + 8) + (5 + 2) = 42 =
     * 0x2a. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ADMIN_RESP;
    m.u.admin_resp.id = 7;
    m.u.admin_resp.status = 0;
    m.u.admin_resp.body = S("{\"a\":1}");
    kat(&m, "0000002a 86 a176 01 a474797065 15 a26964 07 a6737461747573 00 "
            "a4626f6479 a77b2261223a317d a464617461 c400");
    /* status -10014 (int16 d1 d8e2); body {"error":"no such job: abcdefg"} is 32 bytes,
     * one past fixstr: str8 d9 20; data 01 02 03 (c4 03). Body 1 + 3 + 6 + 4 + (7 + 3) +
     * (5 + 34) + (5 + 5) = 73 = 0x49. */
    static const uint8_t d3[3] = {1, 2, 3};
    m.u.admin_resp.id = 1;
    m.u.admin_resp.status = -10014;
    m.u.admin_resp.body = S("{\"error\":\"no such job: abcdefg\"}");
    m.u.admin_resp.data = d3;
    m.u.admin_resp.data_len = 3;
    kat(&m, "00000049 86 a176 01 a474797065 15 a26964 01 a6737461747573 d1d8e2 "
            "a4626f6479 d920 7b226572726f72223a226e6f2073756368206a6f623a2061626364656667227d "
            "a464617461 c403 010203");

    /* receipt 22 (0x16): job 00 01 .. 1f, round 5, body {"r":1} (a7), sig 64 x 5a (bin8
     * c4 40). 6 pairs; body 1 + 3 + 6 + 38 + (6 + 1) + (5 + 8) + (4 + 66) = 138 = 0x8a. */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_RECEIPT;
    for (int i = 0; i < 32; i++)
        m.u.receipt.job[i] = (uint8_t)i;
    m.u.receipt.round = 5;
    m.u.receipt.body = S("{\"r\":1}");
    memset(m.u.receipt.sig, 0x5a, 64);
    kat(&m, "0000008a 86 a176 01 a474797065 16 a36a6f62 c420" J32 "a5726f756e64 05 "
            "a4626f6479 a77b2272223a317d a3736967 c440" R32("5a") R32("5a"));
#undef J32
#undef R32
}

/* ---- round trip of every type -------------------------------------------------------- */

static void roundtrip(const fv_msg_t *m, const fv_wire_limits_t *lim)
{
    fv_buf_t a = {0}, b = {0};
    fv_msg_t back;
    fv_diag_t d = {""};
    CHECK_OK(fv_wire_encode(m, lim, &a), NULL);
    CHECK_OK(decode_frame(a.data, a.len, lim, &back, &d), &d);
    if (!msg_eq(m, &back))
        FV__FAIL("%s: decoded message differs", fv_msg_type_name((int)m->type));
    CHECK_OK(fv_wire_encode(&back, lim, &b), NULL);
    check_bytes(b.data, b.len, a.data, a.len);
    fv_buf_free(&a);
    fv_buf_free(&b);
}

static void test_roundtrip_all_types(void)
{
    fv_wire_limits_t lim = deflim();
    static uint8_t big[FV_WIRE_ECHO_MAX];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + 1);
    char name256[FV_WIRE_TEXT_MAX + 1];
    memset(name256, 'n', FV_WIRE_TEXT_MAX);
    name256[FV_WIRE_TEXT_MAX] = '\0';
    /* a spec of FV_WIRE_SPEC_MAX bytes and the keys of a 65535-agent cohort (2 MiB) need
     * the 4 MiB frame; 1 MiB of spec fits */
    enum { N_MAX = 65535 };
    uint8_t *spec = malloc(FV_WIRE_SPEC_MAX), *pks = malloc((size_t)N_MAX * 32);
    char *text = malloc(FV_WIRE_ADMIN_BODY_MAX); /* the largest admin_resp body */
    CHECK(spec != NULL && pks != NULL && text != NULL);
    for (size_t i = 0; i < FV_WIRE_SPEC_MAX; i++)
        spec[i] = (uint8_t)("{}\"a:1,"[i % 7]);
    for (size_t i = 0; i < (size_t)N_MAX * 32; i++)
        pks[i] = (uint8_t)(i * 131 + 7);
    for (size_t i = 0; i < FV_WIRE_ADMIN_BODY_MAX; i++)
        text[i] = "{\"k\": [1, 2],\n\t\"x\": \"\xc3\xa9\"}\r\n"[i % 27];
    int n_types = 0;

    for (int t = 1; t <= FV_MSG_TYPE_MAX; t++) {
        fv_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = (fv_msg_type_t)t;
        switch (m.type) {
        case FV_MSG_HELLO:
            m.u.hello.sw = S("fedvault 0.4.0 (abc1234) \xc3\xa9");
            m.u.hello.max_frame_bytes = 4096;
            roundtrip(&m, &lim);
            m.u.hello.max_frame_bytes = FV_WIRE_FRAME_MAX_CEILING;
            m.u.hello.sw = S(name256);
            break;
        case FV_MSG_ERROR:
            m.u.error.code = INT32_MIN;
            m.u.error.reason = S(name256);
            roundtrip(&m, &lim);
            m.u.error.code = -1;
            m.u.error.reason = S("peer timed out");
            break;
        case FV_MSG_PING:
        case FV_MSG_PONG:
            m.u.ping.seq = 0;
            roundtrip(&m, &lim);
            m.u.ping.seq = UINT64_MAX;
            break;
        case FV_MSG_BYE:
            m.u.bye.reason = S("");
            roundtrip(&m, &lim);
            m.u.bye.reason = S("shutting down");
            break;
        case FV_MSG_ECHO:
        case FV_MSG_ECHO_REPLY:
            m.u.echo.seq = 1ull << 40;
            m.u.echo.body = NULL;
            m.u.echo.body_len = 0;
            roundtrip(&m, &lim);
            m.u.echo.body = big;
            m.u.echo.body_len = sizeof(big); /* bin32 */
            roundtrip(&m, &lim);
            m.u.echo.body_len = 300; /* bin16 */
            break;
        case FV_MSG_VEC_BEGIN:
            m.u.vec_begin.id = UINT32_MAX;
            m.u.vec_begin.dtype = FV_VEC_U32;
            m.u.vec_begin.n_elems = lim.max_vec_elems;
            m.u.vec_begin.chunk_elems = (lim.max_frame_bytes - 64) / 4;
            m.u.vec_begin.name = S(name256);
            roundtrip(&m, &lim);
            m.u.vec_begin.n_elems = 1;
            m.u.vec_begin.chunk_elems = 1;
            m.u.vec_begin.name = S("w");
            break;
        case FV_MSG_VEC_CHUNK:
            m.u.vec_chunk.id = 1;
            m.u.vec_chunk.seq = UINT32_MAX;
            m.u.vec_chunk.data = big;
            m.u.vec_chunk.len = 4;
            roundtrip(&m, &lim);
            m.u.vec_chunk.len = sizeof(big);
            break;
        case FV_MSG_VEC_END:
        case FV_MSG_VEC_ACK:
            m.u.vec_end.id = 99;
            memset(m.u.vec_end.sha256, 0xab, 32);
            break;
        case FV_MSG_JOB_OFFER:
            memset(m.u.job_offer.job, 0x01, 32);
            m.u.job_offer.spec = spec;
            m.u.job_offer.spec_len = 1;
            roundtrip(&m, &lim);
            m.u.job_offer.spec_len = 255; /* bin8 */
            roundtrip(&m, &lim);
            m.u.job_offer.crl = spec;
            m.u.job_offer.crl_len = 300; /* bin16 */
            roundtrip(&m, &lim);
            m.u.job_offer.crl_len = FV_WIRE_CRL_MAX; /* bin32 at its cap (2 MiB + keys) */
            roundtrip(&m, &lim);
            m.u.job_offer.crl_len = 0;
            m.u.job_offer.spec_len = FV_WIRE_SPEC_MAX; /* bin32 */
            break;
        case FV_MSG_JOB_ACCEPT:
            memset(m.u.job_accept.job, 0x02, 32);
            memset(m.u.job_accept.data_sha256, 0xd5, 32);
            m.u.job_accept.rows = 0;
            m.u.job_accept.has_model = false;
            roundtrip(&m, &lim);
            m.u.job_accept.rows = UINT64_MAX;
            m.u.job_accept.has_model = true;
            memset(m.u.job_accept.model, 0x3c, 32);
            break;
        case FV_MSG_JOB_REFUSE:
            memset(m.u.job_refuse.job, 0x03, 32);
            m.u.job_refuse.reason = S("");
            m.u.job_refuse.category = FV_REFUSE_UNKNOWN;
            roundtrip(&m, &lim);
            m.u.job_refuse.category = FV_REFUSE_RESOURCES;
            roundtrip(&m, &lim);
            m.u.job_refuse.reason = S(name256);
            m.u.job_refuse.category = FV_REFUSE_SCHEMA;
            break;
        case FV_MSG_ROUND_START:
            /* the smallest cohort: n 3, index n-1, t 1, k 1, kind 1, no model */
            memset(m.u.round_start.job, 0x04, 32);
            m.u.round_start.round = 0;
            m.u.round_start.kind = 1;
            m.u.round_start.n = 3;
            m.u.round_start.index = 2;
            m.u.round_start.t = 1;
            m.u.round_start.k = 1;
            memset(m.u.round_start.gseed, 0x9e, 32);
            m.u.round_start.pks = pks;
            m.u.round_start.pks_len = 3 * 32;
            m.u.round_start.has_model = false;
            m.u.round_start.n_ref = 0;
            roundtrip(&m, &lim);
            /* t = n, k = n-1 */
            m.u.round_start.t = 3;
            m.u.round_start.k = 2;
            m.u.round_start.index = 0;
            roundtrip(&m, &lim);
            {
                /* certs: entries of 1, FV_WIRE_CERT_MAX and 300 bytes */
                size_t cl = 2 + 1 + 2 + FV_WIRE_CERT_MAX + 2 + 300;
                uint8_t *cb = calloc(1, cl);
                CHECK(cb != NULL);
                cb[1] = 1;
                cb[3] = FV_WIRE_CERT_MAX >> 8;
                cb[4] = FV_WIRE_CERT_MAX & 0xff;
                cb[5 + FV_WIRE_CERT_MAX] = 300 >> 8;
                cb[6 + FV_WIRE_CERT_MAX] = 300 & 0xff;
                m.u.round_start.certs = cb;
                m.u.round_start.certs_len = cl;
                roundtrip(&m, &lim);
                m.u.round_start.certs = NULL;
                m.u.round_start.certs_len = 0;
                free(cb);
            }
            /* the largest: n 65535 (pks bin32 of 2 MiB), index n-1, t n, k n-1 */
            m.u.round_start.round = UINT64_MAX;
            m.u.round_start.kind = 2;
            m.u.round_start.n = N_MAX;
            m.u.round_start.index = N_MAX - 1;
            m.u.round_start.t = N_MAX;
            m.u.round_start.k = N_MAX - 1;
            m.u.round_start.pks_len = (size_t)N_MAX * 32;
            m.u.round_start.has_model = true;
            memset(m.u.round_start.model, 0xee, 32);
            m.u.round_start.n_ref = UINT64_MAX;
            break;
        case FV_MSG_SECAGG:
            memset(m.u.secagg.job, 0x05, 32);
            m.u.secagg.round = 1;
            m.u.secagg.data = big;
            m.u.secagg.len = 1;
            roundtrip(&m, &lim);
            m.u.secagg.len = 7; /* no multiple-of-4 rule here */
            roundtrip(&m, &lim);
            m.u.secagg.round = UINT64_MAX;
            m.u.secagg.len = sizeof(big);
            break;
        case FV_MSG_UPLOAD_GO:
            memset(m.u.upload_go.job, 0x06, 32);
            m.u.upload_go.round = 0;
            roundtrip(&m, &lim);
            m.u.upload_go.round = UINT64_MAX;
            break;
        case FV_MSG_ROUND_END:
            memset(m.u.round_end.job, 0x07, 32);
            m.u.round_end.round = 0;
            m.u.round_end.status = 0;
            m.u.round_end.reason = S("");
            roundtrip(&m, &lim);
            m.u.round_end.status = -1;
            roundtrip(&m, &lim);
            m.u.round_end.status = -33; /* int8 */
            roundtrip(&m, &lim);
            m.u.round_end.round = UINT64_MAX;
            m.u.round_end.status = INT32_MIN;
            m.u.round_end.reason = S(name256);
            break;
        case FV_MSG_JOB_DONE:
            memset(m.u.job_done.job, 0x08, 32);
            m.u.job_done.rounds = 0;
            roundtrip(&m, &lim);
            m.u.job_done.rounds = UINT64_MAX;
            memset(m.u.job_done.model, 0x42, 32);
            break;
        case FV_MSG_ADMIN_REQ:
            m.u.admin_req.id = 0;
            m.u.admin_req.cmd = S(".");
            m.u.admin_req.args = S("");
            roundtrip(&m, &lim);
            /* JSON's whitespace and 0x7f pass in JSON text */
            m.u.admin_req.cmd = S("job.submit");
            m.u.admin_req.args = S("{\n\t\"spec\": {}\r\n} \x7f \xc3\xa9");
            roundtrip(&m, &lim);
            /* the largest: 64-byte cmd, FV_WIRE_SPEC_MAX bytes of args (str32) */
            m.u.admin_req.id = UINT32_MAX;
            m.u.admin_req.cmd =
                S("abcdefghijklmnopqrstuvwxyz.abcdefghijklmnopqrstuvwxyz.abcdefghij");
            CHECK_UINT_EQ(m.u.admin_req.cmd.len, FV_WIRE_ADMIN_CMD_MAX);
            m.u.admin_req.args.ptr = (const char *)spec;
            m.u.admin_req.args.len = FV_WIRE_SPEC_MAX;
            break;
        case FV_MSG_ADMIN_RESP:
            m.u.admin_resp.id = 1;
            m.u.admin_resp.status = 0;
            m.u.admin_resp.body = S("");
            roundtrip(&m, &lim);
            m.u.admin_resp.status = -1;
            m.u.admin_resp.body = S("{\"error\": \"no\"}\n");
            m.u.admin_resp.data = big;
            m.u.admin_resp.data_len = 1;
            roundtrip(&m, &lim);
            /* the largest, in an admin port's frame: 2 MiB of body and 1 MiB of data */
            lim.max_frame_bytes = FV_WIRE_ADMIN_FRAME_BYTES;
            m.u.admin_resp.id = UINT32_MAX;
            m.u.admin_resp.status = INT32_MIN;
            m.u.admin_resp.body.ptr = text;
            m.u.admin_resp.body.len = FV_WIRE_ADMIN_BODY_MAX;
            m.u.admin_resp.data = spec;
            m.u.admin_resp.data_len = FV_WIRE_ADMIN_DATA_MAX;
            break;
        case FV_MSG_RECEIPT:
            memset(m.u.receipt.job, 0x09, 32);
            m.u.receipt.round = 0;
            m.u.receipt.body = S("{");
            memset(m.u.receipt.sig, 0xc3, 64);
            roundtrip(&m, &lim);
            m.u.receipt.round = UINT64_MAX;
            m.u.receipt.body.ptr = (const char *)spec;
            m.u.receipt.body.len = FV_WIRE_RECEIPT_MAX - 1; /* str16's largest */
            roundtrip(&m, &lim);
            m.u.receipt.body.len = FV_WIRE_RECEIPT_MAX; /* str32 */
            break;
        case FV_MSG_RELEASE:
            m.u.release.body = S("{");
            roundtrip(&m, &lim);
            m.u.release.body.ptr = (const char *)spec;
            m.u.release.body.len = FV_WIRE_RELEASE_MAX; /* str32 */
            break;
        case FV_MSG_RELEASE_SYNC:
            m.u.release_sync.n = 0;
            roundtrip(&m, &lim);
            m.u.release_sync.n = FV_WIRE_RELEASE_SYNC_MAX;
            m.u.release_sync.crl = spec;
            m.u.release_sync.crl_len = FV_WIRE_CRL_MAX;
            break;
        case FV_MSG_FETCH:
            memset(m.u.fetch.sha256, 0xab, 32);
            break;
        case FV_MSG_FILE_CHUNK:
            memset(m.u.file_chunk.sha256, 0x11, 32);
            m.u.file_chunk.offset = 0;
            m.u.file_chunk.total = 1;
            m.u.file_chunk.data = big;
            m.u.file_chunk.len = 1;
            roundtrip(&m, &lim);
            m.u.file_chunk.offset = FV_WIRE_FILE_MAX - FV_WIRE_ECHO_MAX;
            m.u.file_chunk.total = FV_WIRE_FILE_MAX;
            m.u.file_chunk.len = FV_WIRE_ECHO_MAX;
            break;
        case FV_MSG_FETCH_FAIL:
            memset(m.u.fetch_fail.sha256, 0x22, 32);
            m.u.fetch_fail.reason = S("");
            roundtrip(&m, &lim);
            m.u.fetch_fail.reason = S(name256);
            break;
        case FV_MSG_SCHEMA_QUERY:
            memset(m.u.schema_query.job, 0x33, 32);
            m.u.schema_query.spec = spec;
            m.u.schema_query.spec_len = 1;
            roundtrip(&m, &lim);
            m.u.schema_query.spec_len = FV_WIRE_SPEC_MAX; /* bin32 */
            break;
        case FV_MSG_SCHEMA_VOCAB:
            memset(m.u.schema_vocab.job, 0x44, 32);
            m.u.schema_vocab.status = 0;
            m.u.schema_vocab.category = S("");
            m.u.schema_vocab.body = S("");
            roundtrip(&m, &lim);
            m.u.schema_vocab.status = INT32_MIN;
            m.u.schema_vocab.category = S("abcdefghijklmnop"); /* FV_WIRE_CATEGORY_MAX */
            roundtrip(&m, &lim);
            m.u.schema_vocab.category = S("policy");
            m.u.schema_vocab.status = -10014;
            roundtrip(&m, &lim);
            /* the largest vocabulary: FV_WIRE_VOCAB_MAX bytes of JSON text (str32) */
            m.u.schema_vocab.status = 0;
            m.u.schema_vocab.category = S("");
            m.u.schema_vocab.body.ptr = text;
            m.u.schema_vocab.body.len = FV_WIRE_VOCAB_MAX;
            break;
        }
        roundtrip(&m, &lim);
        n_types++;
    }
    CHECK_INT_EQ(n_types, FV_MSG_TYPE_MAX);
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_ECHO_REPLY), "echo_reply");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_JOB_OFFER), "job_offer");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_ROUND_START), "round_start");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_JOB_DONE), "job_done");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_ADMIN_REQ), "admin_req");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_ADMIN_RESP), "admin_resp");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_RECEIPT), "receipt");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_RELEASE_SYNC), "release_sync");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_FILE_CHUNK), "file_chunk");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_FETCH_FAIL), "fetch_fail");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_SCHEMA_QUERY), "schema_query");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_SCHEMA_VOCAB), "schema_vocab");
    CHECK_STR_EQ(fv_msg_type_name(0), "unknown");
    CHECK_STR_EQ(fv_msg_type_name(FV_MSG_TYPE_MAX + 1), "unknown");
    free(spec);
    free(pks);
    free(text);
}

/* ---- encoder refusals ------------------------------------------------------------------ */

static void test_encode_refusals(void)
{
    fv_wire_limits_t lim = deflim();
    fv_buf_t out = {0};
    static uint8_t data[FV_WIRE_ECHO_MAX + 1];
    fv_msg_t m;

#define ENC_FAILS(code)                                                                            \
    do {                                                                                           \
        size_t fv__len = out.len;                                                                  \
        CHECK_INT_EQ(fv_wire_encode(&m, &lim, &out), code);                                        \
        CHECK_UINT_EQ(out.len, fv__len);                                                           \
    } while (0)

    memset(&m, 0, sizeof(m));
    m.type = (fv_msg_type_t)0;
    ENC_FAILS(FV_EINVAL);
    m.type = (fv_msg_type_t)(FV_MSG_TYPE_MAX + 1);
    ENC_FAILS(FV_EINVAL);

    m.type = FV_MSG_HELLO;
    m.u.hello.sw = S("");
    m.u.hello.max_frame_bytes = 4096;
    ENC_FAILS(FV_EINVAL);
    m.u.hello.sw = S("tab\there");
    ENC_FAILS(FV_EINVAL);
    m.u.hello.sw = S("ok");
    m.u.hello.max_frame_bytes = 4095;
    ENC_FAILS(FV_EINVAL);

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ERROR;
    m.u.error.code = 0;
    ENC_FAILS(FV_EINVAL);

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ECHO;
    m.u.echo.body = data;
    m.u.echo.body_len = FV_WIRE_ECHO_MAX + 1;
    ENC_FAILS(FV_EINVAL);
    m.u.echo.body_len = 5000; /* valid, but the body passes a 4096-byte frame */
    lim.max_frame_bytes = 4096;
    ENC_FAILS(FV_ETOOBIG);
    lim = deflim();
    m.u.echo.body = NULL;
    m.u.echo.body_len = 1;
    ENC_FAILS(FV_EINVAL);

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_VEC_CHUNK;
    m.u.vec_chunk.data = data;
    m.u.vec_chunk.len = 5;
    ENC_FAILS(FV_EINVAL);
    m.u.vec_chunk.len = 0;
    ENC_FAILS(FV_EINVAL);

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_VEC_BEGIN;
    m.u.vec_begin.dtype = FV_VEC_F32;
    m.u.vec_begin.n_elems = lim.max_vec_elems + 1;
    m.u.vec_begin.chunk_elems = 1;
    m.u.vec_begin.name = S("w");
    ENC_FAILS(FV_EINVAL);
    m.u.vec_begin.n_elems = 1;
    m.u.vec_begin.chunk_elems = (lim.max_frame_bytes - 64) / 4 + 1;
    ENC_FAILS(FV_EINVAL);
    m.u.vec_begin.chunk_elems = 0;
    ENC_FAILS(FV_EINVAL);
    m.u.vec_begin.chunk_elems = 1;
    m.u.vec_begin.dtype = (fv_vec_dtype_t)3;
    ENC_FAILS(FV_EINVAL);

    /* the round protocol */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_JOB_OFFER;
    m.u.job_offer.spec = data;
    m.u.job_offer.spec_len = 0;
    ENC_FAILS(FV_EINVAL);
    m.u.job_offer.spec = NULL;
    m.u.job_offer.spec_len = 1;
    ENC_FAILS(FV_EINVAL);
    m.u.job_offer.spec = data;
    m.u.job_offer.spec_len = FV_WIRE_SPEC_MAX + 1; /* (not read: refused on its length) */
    ENC_FAILS(FV_EINVAL);
    m.u.job_offer.crl = data;
    m.u.job_offer.crl_len = FV_WIRE_CRL_MAX + 1; /* (not read) */
    ENC_FAILS(FV_EINVAL);
    m.u.job_offer.crl_len = 0;
    m.u.job_offer.spec_len = 5000; /* valid, but not in a 4096-byte frame */
    lim.max_frame_bytes = 4096;
    ENC_FAILS(FV_ETOOBIG);
    lim = deflim();

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_JOB_REFUSE;
    m.u.job_refuse.reason = S("a\rb");
    ENC_FAILS(FV_EINVAL);

    static uint8_t pks[4 * 32];
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ROUND_START;
    m.u.round_start.kind = 1;
    m.u.round_start.n = 4;
    m.u.round_start.index = 3;
    m.u.round_start.t = 4;
    m.u.round_start.k = 3;
    m.u.round_start.pks = pks;
    m.u.round_start.pks_len = sizeof(pks);
    CHECK_OK(fv_wire_encode(&m, &lim, &out), NULL); /* the edges pass */
    out.len = 0;
    const fv_msg_t rs = m;
    m.u.round_start.kind = 0;
    ENC_FAILS(FV_EINVAL);
    m.u.round_start.kind = 255; /* any id of a kinds table: the agent checks it */
    CHECK_OK(fv_wire_encode(&m, &lim, &out), NULL);
    out.len = 0;
    m.u.round_start.kind = 256;
    ENC_FAILS(FV_EINVAL);
    m = rs;
    m.u.round_start.index = 4; /* index >= n */
    ENC_FAILS(FV_EINVAL);
    m = rs;
    m.u.round_start.t = 5; /* t > n */
    ENC_FAILS(FV_EINVAL);
    m.u.round_start.t = 0;
    ENC_FAILS(FV_EINVAL);
    m = rs;
    m.u.round_start.k = 4; /* k >= n */
    ENC_FAILS(FV_EINVAL);
    m.u.round_start.k = 0;
    ENC_FAILS(FV_EINVAL);
    m = rs;
    m.u.round_start.pks_len = 3 * 32; /* != n*32 */
    ENC_FAILS(FV_EINVAL);
    m.u.round_start.pks_len = 4 * 32 + 1;
    ENC_FAILS(FV_EINVAL);
    m.u.round_start.pks = NULL;
    m.u.round_start.pks_len = 4 * 32;
    ENC_FAILS(FV_EINVAL);
    m = rs;
    {
        /* certs: the encoder checks the framing the decoder checks */
        static const uint8_t c3[9] = {0, 1, 'a', 0, 1, 'b', 0, 1, 'c'};
        static const uint8_t c4[12] = {0, 1, 'a', 0, 1, 'b', 0, 1, 'c', 0, 1, 'd'};
        m.u.round_start.certs = c3; /* 3 entries for n = 4 */
        m.u.round_start.certs_len = sizeof c3;
        ENC_FAILS(FV_EINVAL);
        m.u.round_start.certs = c4;
        m.u.round_start.certs_len = sizeof c4;
        CHECK_OK(fv_wire_encode(&m, &lim, &out), NULL);
        out.len = 0;
        m.u.round_start.certs = NULL; /* NULL with a length */
        ENC_FAILS(FV_EINVAL);
    }
    m = rs;
    m.u.round_start.n = 2; /* below 3 (index, t, k and pks fixed to fit n 2) */
    m.u.round_start.index = 1;
    m.u.round_start.t = 2;
    m.u.round_start.k = 1;
    m.u.round_start.pks_len = 2 * 32;
    ENC_FAILS(FV_EINVAL);
    m = rs;
    m.u.round_start.n = 65536;
    ENC_FAILS(FV_EINVAL);

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_SECAGG;
    m.u.secagg.data = data;
    m.u.secagg.len = 0;
    ENC_FAILS(FV_EINVAL);
    m.u.secagg.data = NULL;
    m.u.secagg.len = 3;
    ENC_FAILS(FV_EINVAL);
    m.u.secagg.data = data;
    m.u.secagg.len = 4097; /* above the frame cap itself */
    lim.max_frame_bytes = 4096;
    ENC_FAILS(FV_EINVAL);
    m.u.secagg.len = 4096; /* valid, but the frame needs more than the data */
    ENC_FAILS(FV_ETOOBIG);
    lim = deflim();

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ROUND_END;
    m.u.round_end.status = 1;
    ENC_FAILS(FV_EINVAL);
    m.u.round_end.status = INT32_MAX;
    ENC_FAILS(FV_EINVAL);
    m.u.round_end.status = -1;
    m.u.round_end.reason.ptr = NULL;
    m.u.round_end.reason.len = 2;
    ENC_FAILS(FV_EINVAL);

    /* the admin exchange and the receipt */
    static const char cmd65[] = "abcdefghijklmnopqrstuvwxyz.abcdefghijklmnopqrstuvwxyz.abcdefghijk";
    static const char nul[] = {'{', 0, '}'};
    static const char bigtext[FV_WIRE_ECHO_MAX + 1]; /* zeros: refused on length first */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ADMIN_REQ;
    m.u.admin_req.cmd = S("status");
    m.u.admin_req.args = S("");
    CHECK_OK(fv_wire_encode(&m, &lim, &out), NULL);
    out.len = 0;
    m.u.admin_req.cmd = S("");
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.cmd = S("Status");
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.cmd = S("job-show");
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.cmd = S("job.show\n");
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.cmd = S(cmd65);
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.cmd.ptr = NULL;
    m.u.admin_req.cmd.len = 3;
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.cmd = S("status");
    m.u.admin_req.args.ptr = nul;
    m.u.admin_req.args.len = sizeof(nul);
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.args = S("{\x1b}");
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.args.ptr = bigtext;
    m.u.admin_req.args.len = FV_WIRE_SPEC_MAX + 1; /* (not read: refused on its length) */
    ENC_FAILS(FV_EINVAL);
    m.u.admin_req.args.ptr = NULL;
    m.u.admin_req.args.len = 1;
    ENC_FAILS(FV_EINVAL);

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ADMIN_RESP;
    m.u.admin_resp.status = 1;
    ENC_FAILS(FV_EINVAL);
    m.u.admin_resp.status = INT32_MAX;
    ENC_FAILS(FV_EINVAL);
    m.u.admin_resp.status = 0;
    m.u.admin_resp.body = S("{\"a\":\"\x01\"}");
    ENC_FAILS(FV_EINVAL);
    m.u.admin_resp.body.ptr = bigtext;
    m.u.admin_resp.body.len = FV_WIRE_ADMIN_BODY_MAX + 1;
    ENC_FAILS(FV_EINVAL);
    m.u.admin_resp.body = S("{}");
    m.u.admin_resp.data = data;
    m.u.admin_resp.data_len = FV_WIRE_ADMIN_DATA_MAX + 1;
    ENC_FAILS(FV_EINVAL);
    m.u.admin_resp.data = NULL;
    m.u.admin_resp.data_len = 1;
    ENC_FAILS(FV_EINVAL);
    m.u.admin_resp.data = data;
    m.u.admin_resp.data_len = 5000; /* valid, but not in a 4096-byte frame */
    lim.max_frame_bytes = 4096;
    ENC_FAILS(FV_ETOOBIG);
    lim = deflim();

    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_RECEIPT;
    m.u.receipt.body = S("");
    ENC_FAILS(FV_EINVAL);
    m.u.receipt.body = S("{\"a\":\0}");
    m.u.receipt.body.len = 7; /* the NUL inside */
    ENC_FAILS(FV_EINVAL);
    m.u.receipt.body.ptr = bigtext;
    m.u.receipt.body.len = FV_WIRE_RECEIPT_MAX + 1;
    ENC_FAILS(FV_EINVAL);
    m.u.receipt.body.ptr = NULL;
    m.u.receipt.body.len = 2;
    ENC_FAILS(FV_EINVAL);
    m.u.receipt.body.ptr = (const char *)data; /* zeros are control bytes: make text */
    memset(data, 'r', 5000);
    m.u.receipt.body.len = 5000; /* valid, but not in a 4096-byte frame */
    lim.max_frame_bytes = 4096;
    ENC_FAILS(FV_ETOOBIG);
    lim = deflim();
#undef ENC_FAILS
    CHECK_UINT_EQ(out.len, 0);
    fv_buf_free(&out);
    fv_buf_free(NULL);

    /* frames append */
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_PING;
    CHECK_OK(fv_wire_encode(&m, &lim, &out), NULL);
    size_t one = out.len;
    CHECK_OK(fv_wire_encode(&m, &lim, &out), NULL);
    CHECK_UINT_EQ(out.len, 2 * one);
    CHECK(memcmp(out.data, out.data + one, one) == 0);
    fv_buf_free(&out);
}

static void test_limits(void)
{
    fv_wire_limits_t l = deflim();
    fv_diag_t d = {""};
    CHECK_UINT_EQ(l.max_frame_bytes, 4u << 20);
    CHECK_UINT_EQ(l.max_vec_elems, 1ull << 28);
    CHECK_OK(fv_wire_limits_check(&l, &d), &d);
    l.max_frame_bytes = 4095;
    CHECK_INT_EQ(fv_wire_limits_check(&l, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "max_frame_bytes");
    l.max_frame_bytes = FV_WIRE_FRAME_MAX_CEILING + 1;
    CHECK_INT_EQ(fv_wire_limits_check(&l, &d), FV_EINVAL);
    l.max_frame_bytes = FV_WIRE_FRAME_MAX_CEILING;
    l.max_vec_elems = 0;
    CHECK_INT_EQ(fv_wire_limits_check(&l, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "max_vec_elems");
    l.max_vec_elems = FV_WIRE_VEC_ELEMS_CEILING + 1;
    CHECK_INT_EQ(fv_wire_limits_check(&l, &d), FV_EINVAL);
    l.max_vec_elems = FV_WIRE_VEC_ELEMS_CEILING;
    CHECK_OK(fv_wire_limits_check(&l, &d), &d);
}

/* ---- an independent msgpack writer for hand-made bodies ----------------------------------- */

typedef struct mb {
    uint8_t b[80000];
    size_t n;
} mb_t;

static void mb_raw(mb_t *m, const void *p, size_t n)
{
    CHECK(m->n + n <= sizeof(m->b));
    if (n > 0)
        memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void mb_be(mb_t *m, uint8_t tag, uint64_t v, int n_bytes)
{
    uint8_t t[9];
    t[0] = tag;
    for (int i = 0; i < n_bytes; i++)
        t[1 + i] = (uint8_t)(v >> (8 * (n_bytes - 1 - i)));
    mb_raw(m, t, 1 + (size_t)n_bytes);
}

static void mb_uint(mb_t *m, uint64_t v)
{
    if (v < 128)
        mb_be(m, (uint8_t)v, 0, 0);
    else if (v < 256)
        mb_be(m, 0xcc, v, 1);
    else if (v < 65536)
        mb_be(m, 0xcd, v, 2);
    else if (v <= UINT32_MAX)
        mb_be(m, 0xce, v, 4);
    else
        mb_be(m, 0xcf, v, 8);
}

static void mb_int(mb_t *m, int64_t v)
{
    if (v >= 0)
        mb_uint(m, (uint64_t)v);
    else if (v >= -32)
        mb_be(m, (uint8_t)(int8_t)v, 0, 0);
    else if (v >= -128)
        mb_be(m, 0xd0, (uint64_t)v, 1);
    else if (v >= -32768)
        mb_be(m, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN)
        mb_be(m, 0xd2, (uint64_t)v, 4);
    else
        mb_be(m, 0xd3, (uint64_t)v, 8);
}

static void mb_strn(mb_t *m, const char *s, size_t n)
{
    if (n < 32)
        mb_be(m, (uint8_t)(0xa0 | n), 0, 0);
    else if (n < 256)
        mb_be(m, 0xd9, n, 1);
    else if (n < 65536)
        mb_be(m, 0xda, n, 2);
    else
        mb_be(m, 0xdb, n, 4);
    mb_raw(m, s, n);
}

static void mb_str(mb_t *m, const char *s)
{
    mb_strn(m, s, strlen(s));
}

static void mb_bin(mb_t *m, const void *p, size_t n)
{
    if (n < 256)
        mb_be(m, 0xc4, n, 1);
    else if (n < 65536)
        mb_be(m, 0xc5, n, 2);
    else
        mb_be(m, 0xc6, n, 4);
    mb_raw(m, p, n);
}

/* A message as a list of fields, "v" and "type" included, so that every field can be
 * dropped, doubled or mistyped in turn. */
typedef enum { F_UINT, F_NEG, F_STR, F_BIN } fkind_t;
typedef struct field {
    const char *key;
    fkind_t kind;
    uint64_t u; /* F_UINT value; F_NEG: -(int64_t)u; F_STR/F_BIN length */
    const char *p;
} field_t;
typedef struct spec {
    const char *name;
    int n;
    field_t f[14]; /* round_start: "v", "type" and 12 fields */
} spec_t;

static const char sha[32] = "0123456789abcdef0123456789abcdef";
static const char sig64[64] = "sig0sig0sig0sig0sig0sig0sig0sig0sig1sig1sig1sig1sig1sig1sig1sig";
static const char chunk8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static const char pks3[96] = "pk0pk0pk0pk0pk0pk0pk0pk0pk0pk0pk"
                             "pk1pk1pk1pk1pk1pk1pk1pk1pk1pk1pk"
                             "pk2pk2pk2pk2pk2pk2pk2pk2pk2pk2pk";
/* round_start certs: 3 entries of 2 bytes */
static const char certs3[12] = {0, 2, 'A', 'B', 0, 2, 'C', 'D', 0, 2, 'E', 'F'};
#define JOB                                                                                        \
    {                                                                                              \
        "job", F_BIN, 32, sha                                                                      \
    }

#define V_T(t)                                                                                     \
    {"v", F_UINT, 1, NULL},                                                                        \
    {                                                                                              \
        "type", F_UINT, t, NULL                                                                    \
    }
static const spec_t specs[] = {
    {"hello", 4, {V_T(1), {"sw", F_STR, 2, "fv"}, {"maxf", F_UINT, 65536, NULL}}},
    {"error", 4, {V_T(2), {"code", F_NEG, 10014, NULL}, {"reason", F_STR, 3, "bad"}}},
    {"ping", 3, {V_T(3), {"seq", F_UINT, 9, NULL}}},
    {"pong", 3, {V_T(4), {"seq", F_UINT, 9, NULL}}},
    {"bye", 3, {V_T(5), {"reason", F_STR, 0, ""}}},
    {"echo", 4, {V_T(6), {"seq", F_UINT, 1, NULL}, {"body", F_BIN, 3, "abc"}}},
    {"echo_reply", 4, {V_T(7), {"seq", F_UINT, 1, NULL}, {"body", F_BIN, 0, ""}}},
    {"vec_begin",
     7,
     {V_T(8),
      {"id", F_UINT, 5, NULL},
      {"dtype", F_UINT, 1, NULL},
      {"n", F_UINT, 1000, NULL},
      {"chunk", F_UINT, 100, NULL},
      {"name", F_STR, 7, "weights"}}},
    {"vec_chunk",
     5,
     {V_T(9), {"id", F_UINT, 5, NULL}, {"seq", F_UINT, 0, NULL}, {"data", F_BIN, 8, chunk8}}},
    {"vec_end", 4, {V_T(10), {"id", F_UINT, 5, NULL}, {"sha256", F_BIN, 32, sha}}},
    {"vec_ack", 4, {V_T(11), {"id", F_UINT, 5, NULL}, {"sha256", F_BIN, 32, sha}}},
    {"job_offer", 5, {V_T(12), JOB, {"spec", F_BIN, 2, "{}"}, {"crl", F_BIN, 3, "crl"}}},
    {"job_accept",
     6,
     {V_T(13),
      JOB,
      {"dsha", F_BIN, 32, sha},
      {"rows", F_UINT, 1000, NULL},
      {"model", F_BIN, 0, ""}}},
    {"job_refuse",
     5,
     {V_T(14), JOB, {"reason", F_STR, 4, "busy"}, {"category", F_STR, 6, "schema"}}},
    {"round_start",
     14,
     {V_T(15),
      JOB,
      {"round", F_UINT, 1, NULL},
      {"kind", F_UINT, 2, NULL},
      {"index", F_UINT, 1, NULL},
      {"n", F_UINT, 3, NULL},
      {"t", F_UINT, 2, NULL},
      {"k", F_UINT, 1, NULL},
      {"gseed", F_BIN, 32, sha},
      {"pks", F_BIN, 96, pks3},
      {"model", F_BIN, 32, sha},
      {"nref", F_UINT, 5000, NULL},
      {"certs", F_BIN, 12, certs3}}},
    {"secagg", 5, {V_T(16), JOB, {"round", F_UINT, 2, NULL}, {"data", F_BIN, 3, "abc"}}},
    {"upload_go", 4, {V_T(17), JOB, {"round", F_UINT, 2, NULL}}},
    {"round_end",
     6,
     {V_T(18),
      JOB,
      {"round", F_UINT, 2, NULL},
      {"status", F_NEG, 10014, NULL},
      {"reason", F_STR, 7, "timeout"}}},
    {"job_done", 5, {V_T(19), JOB, {"rounds", F_UINT, 20, NULL}, {"model", F_BIN, 32, sha}}},
    {"admin_req",
     5,
     {V_T(20), {"id", F_UINT, 7, NULL}, {"cmd", F_STR, 9, "job.abort"}, {"args", F_STR, 2, "{}"}}},
    {"admin_resp",
     6,
     {V_T(21),
      {"id", F_UINT, 7, NULL},
      {"status", F_NEG, 10014, NULL},
      {"body", F_STR, 11, "{\"error\":1}"},
      {"data", F_BIN, 3, "abc"}}},
    {"receipt",
     6,
     {V_T(22),
      JOB,
      {"round", F_UINT, 2, NULL},
      {"body", F_STR, 7, "{\"r\":1}"},
      {"sig", F_BIN, 64, sig64}}},
    {"release", 3, {V_T(23), {"body", F_STR, 7, "{\"m\":1}"}}},
    {"release_sync", 4, {V_T(24), {"n", F_UINT, 2, NULL}, {"crl", F_BIN, 3, "abc"}}},
    {"fetch", 3, {V_T(25), {"sha256", F_BIN, 32, sha}}},
    {"file_chunk",
     6,
     {V_T(26),
      {"sha256", F_BIN, 32, sha},
      {"offset", F_UINT, 5, NULL},
      {"total", F_UINT, 10, NULL},
      {"data", F_BIN, 3, "abc"}}},
    {"fetch_fail", 4, {V_T(27), {"sha256", F_BIN, 32, sha}, {"reason", F_STR, 4, "gone"}}},
    {"schema_query", 4, {V_T(28), JOB, {"spec", F_BIN, 2, "{}"}}},
    {"schema_vocab",
     6,
     {V_T(29),
      JOB,
      {"status", F_NEG, 10014, NULL},
      {"category", F_STR, 6, "policy"},
      {"body", F_STR, 0, ""}}},
};
#undef V_T
#undef JOB

static void put_value(mb_t *m, const field_t *f)
{
    switch (f->kind) {
    case F_UINT:
        mb_uint(m, f->u);
        break;
    case F_NEG:
        mb_int(m, -(int64_t)f->u);
        break;
    case F_STR:
        mb_strn(m, f->p, f->u);
        break;
    case F_BIN:
        mb_bin(m, f->p, f->u);
        break;
    }
}

/* A value of another msgpack type than the field's: one of seven kinds. */
static void put_wrong(mb_t *m, fkind_t kind, int variant)
{
    static const uint8_t others[][3] = {
        {0xc0}, {0xc3}, {0xca, 0, 0}, {0x91, 0x01}, {0x81, 0xa1, 0x61}, {0xd4, 1, 0},
    };
    static const size_t others_len[] = {1, 1, 5, 2, 4, 3};
    switch (variant) {
    case 0: /* the "nearest" wrong kind */
        if (kind == F_UINT || kind == F_NEG)
            mb_str(m, "1");
        else if (kind == F_STR)
            mb_bin(m, "x", 1);
        else
            mb_str(m, "x");
        return;
    case 1:
        if (kind == F_NEG)
            mb_uint(m, 1);
        else if (kind == F_UINT)
            mb_int(m, -1);
        else
            mb_uint(m, 1);
        return;
    default:
        variant -= 2;
        if (variant == 2) {
            mb_raw(m, (const uint8_t[]){0xca, 0x3f, 0x80, 0, 0}, 5); /* float32 1.0 */
        } else if (variant == 4) {
            mb_raw(m, (const uint8_t[]){0x81, 0xa1, 0x61, 0x01}, 4); /* {"a": 1} */
        } else {
            mb_raw(m, others[variant], others_len[variant]);
        }
    }
}

enum { MUT_NONE, MUT_DROP, MUT_DUP, MUT_WRONG, MUT_UNKNOWN };

static void build(mb_t *m, const spec_t *s, int mut, int idx, int variant)
{
    m->n = 0;
    int n = s->n + (mut == MUT_DROP ? -1 : mut == MUT_DUP || mut == MUT_UNKNOWN ? 1 : 0);
    mb_be(m, (uint8_t)(0x80 | n), 0, 0);
    for (int i = 0; i < s->n; i++) {
        const field_t *f = &s->f[i];
        if (mut == MUT_DROP && i == idx)
            continue;
        mb_str(m, f->key);
        if (mut == MUT_WRONG && i == idx)
            put_wrong(m, f->kind, variant);
        else
            put_value(m, f);
        if (mut == MUT_DUP && i == idx) {
            mb_str(m, f->key);
            put_value(m, f);
        }
        if (mut == MUT_UNKNOWN && i == idx) {
            mb_str(m, "zzz");
            mb_uint(m, 0);
        }
    }
}

static void expect_refusal(const mb_t *m, const fv_wire_limits_t *lim, int code,
                           const char *needle1, const char *needle2)
{
    fv_msg_t out;
    memset(&out, 0x5a, sizeof(out));
    fv_msg_t before = out;
    fv_diag_t d = {""};
    int r = fv_wire_decode(m->b, m->n, lim, &out, &d);
    if (r != code)
        FV__FAIL("decode returned %d (%s: %s), expected %d (%s)", r, fv_err_name(r), d.msg, code,
                 fv_err_name(code));
    if (code != 0) /* ret written only on success */
        CHECK(memcmp(&out, &before, sizeof(out)) == 0);
    if (needle1)
        CHECK_CONTAINS(d.msg, needle1);
    if (needle2)
        CHECK_CONTAINS(d.msg, needle2);
}

static void test_field_refusals(void)
{
    fv_wire_limits_t lim = deflim();
    mb_t *m = malloc(sizeof(*m));
    CHECK(m != NULL);
    char q[64];
    int n_cases = 0;
    for (size_t si = 0; si < sizeof(specs) / sizeof(specs[0]); si++) {
        const spec_t *s = &specs[si];
        fv_msg_t out;
        fv_diag_t d = {""};
        build(m, s, MUT_NONE, 0, 0);
        CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
        CHECK_INT_EQ(out.type, (int)si + 1);
        CHECK_STR_EQ(fv_msg_type_name((int)out.type), s->name);
        /* the independent writer's bytes are what the encoder writes */
        fv_buf_t enc = {0};
        CHECK_OK(fv_wire_encode(&out, &lim, &enc), NULL);
        check_bytes(enc.data + 4, enc.len - 4, m->b, m->n);
        fv_buf_free(&enc);

        for (int i = 0; i < s->n; i++) {
            const char *key = s->f[i].key;
            bool common = i < 2; /* "v" and "type": before the type is known */
            snprintf(q, sizeof(q), "'%s'", key);
            const char *who = common ? "wire body" : s->name;

            build(m, s, MUT_DROP, i, 0);
            if (strcmp(key, "category") == 0 && strcmp(s->name, "job_refuse") == 0) {
                /* the one optional field (an older agent's JOB_REFUSE): "unknown" */
                CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
                CHECK_INT_EQ(out.u.job_refuse.category, FV_REFUSE_UNKNOWN);
            } else {
                expect_refusal(m, &lim, FV_EPROTO, "missing field", q);
                expect_refusal(m, &lim, FV_EPROTO, who, NULL);
            }
            build(m, s, MUT_DUP, i, 0);
            expect_refusal(m, &lim, FV_EPROTO, "duplicate field", q);
            expect_refusal(m, &lim, FV_EPROTO, who, NULL);
            for (int v = 0; v < 8; v++) {
                build(m, s, MUT_WRONG, i, v);
                expect_refusal(m, &lim, FV_EPROTO, q, who);
                n_cases++;
            }
            build(m, s, MUT_UNKNOWN, i, 0);
            expect_refusal(m, &lim, FV_EPROTO, "unknown field 'zzz'", s->name);
            n_cases += 3;
        }
    }
    CHECK(n_cases > 800);
    free(m);
}

/* One field's value replaced (by key) with raw msgpack bytes. */
static void build_with(mb_t *m, const spec_t *s, const char *key, const uint8_t *raw, size_t n_raw)
{
    m->n = 0;
    mb_be(m, (uint8_t)(0x80 | s->n), 0, 0);
    bool found = false;
    for (int i = 0; i < s->n; i++) {
        mb_str(m, s->f[i].key);
        if (strcmp(s->f[i].key, key) == 0) {
            mb_raw(m, raw, n_raw);
            found = true;
        } else {
            put_value(m, &s->f[i]);
        }
    }
    CHECK(found);
}

static const spec_t *spec_of(const char *name)
{
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        if (strcmp(specs[i].name, name) == 0)
            return &specs[i];
    FV__FAIL("no spec %s", name);
}

/* Out of range: (message, key, value as msgpack built by fn, sentence fragment). */
static void range_case(const char *msg, const char *key, void (*put)(mb_t *, const void *),
                       const void *arg, int code, const char *needle)
{
    fv_wire_limits_t lim = deflim();
    mb_t *v = malloc(sizeof(*v)), *m = malloc(sizeof(*m));
    CHECK(v != NULL && m != NULL);
    v->n = 0;
    put(v, arg);
    build_with(m, spec_of(msg), key, v->b, v->n);
    char q[64];
    snprintf(q, sizeof(q), "%s: field '%s'", msg, key);
    expect_refusal(m, &lim, code, code == FV_EPROTO ? q : NULL, needle);
    free(v);
    free(m);
}

static void put_u(mb_t *m, const void *a)
{
    mb_uint(m, *(const uint64_t *)a);
}

static void put_i(mb_t *m, const void *a)
{
    mb_int(m, *(const int64_t *)a);
}

static void put_s(mb_t *m, const void *a)
{
    mb_str(m, a);
}

static void put_b(mb_t *m, const void *a)
{
    mb_bin(m, chunk8, *(const size_t *)a > 8 ? 8 : *(const size_t *)a);
    if (*(const size_t *)a > 8) { /* longer: re-emit with the real length */
        static uint8_t zeros[70000];
        size_t n = *(const size_t *)a;
        m->n = 0;
        mb_bin(m, zeros, n);
    }
}

typedef struct raw {
    size_t n;
    uint8_t b[16];
} raw_t;

static void put_raw(mb_t *m, const void *a)
{
    const raw_t *r = a;
    mb_bin(m, r->b, r->n);
}

static void test_range_refusals(void)
{
    static const uint64_t u0 = 0, u3 = 3, u4095 = 4095, big = (1ull << 26) + 1, u2_32 = 1ull << 32,
                          over_n = (1ull << 28) + 1, chunk_max = ((4u << 20) - 64) / 4,
                          chunk_over = ((4u << 20) - 64) / 4 + 1;
    static const int64_t below = (int64_t)INT32_MIN - 1;
    static const size_t b0 = 0, b5 = 5, b31 = 31, b33 = 33, echo_over = FV_WIRE_ECHO_MAX + 1;
    char s257[258], ctrl[] = "a\nb", del[] = "a\x7f";
    memset(s257, 's', 257);
    s257[257] = '\0';

    range_case("hello", "sw", put_s, "", FV_EPROTO, "outside 1..256");
    range_case("hello", "sw", put_s, s257, FV_EPROTO, "257 bytes");
    range_case("hello", "sw", put_s, ctrl, FV_EPROTO, "control byte");
    range_case("hello", "sw", put_s, del, FV_EPROTO, "control byte");
    range_case("hello", "maxf", put_u, &u4095, FV_EPROTO, "4095");
    range_case("hello", "maxf", put_u, &big, FV_EPROTO, "outside");
    range_case("hello", "maxf", put_u, &u2_32, FV_EPROTO, "above 4294967295");
    range_case("error", "code", put_i, &below, FV_EPROTO, "below");
    range_case("error", "code", put_u, &u0, FV_EPROTO, "negative integer");
    range_case("error", "reason", put_s, s257, FV_EPROTO, "257");
    range_case("bye", "reason", put_s, ctrl, FV_EPROTO, "control byte");
    range_case("echo", "body", put_b, &echo_over, FV_EPROTO, "above 65536");
    range_case("vec_begin", "id", put_u, &u2_32, FV_EPROTO, "above");
    range_case("vec_begin", "dtype", put_u, &u0, FV_EPROTO, "element type");
    range_case("vec_begin", "dtype", put_u, &u3, FV_EPROTO, "element type");
    range_case("vec_begin", "n", put_u, &u0, FV_EPROTO, "outside 1..268435456");
    range_case("vec_begin", "n", put_u, &over_n, FV_EPROTO, "outside 1..268435456");
    range_case("vec_begin", "chunk", put_u, &u0, FV_EPROTO, "elements per chunk");
    range_case("vec_begin", "chunk", put_u, &chunk_over, FV_EPROTO, "elements per chunk");
    range_case("vec_begin", "chunk", put_u, &u2_32, FV_EPROTO, "elements per chunk");
    range_case("vec_begin", "name", put_s, "", FV_EPROTO, "outside 1..256");
    range_case("vec_chunk", "id", put_u, &u2_32, FV_EPROTO, "above");
    range_case("vec_chunk", "seq", put_u, &u2_32, FV_EPROTO, "above");
    range_case("vec_chunk", "data", put_b, &b5, FV_EPROTO, "5 bytes is not a multiple of 4");
    range_case("vec_chunk", "data", put_b, &b0, FV_EPROTO, "empty");
    range_case("vec_end", "sha256", put_b, &b31, FV_EPROTO, "31 bytes");
    range_case("vec_ack", "sha256", put_b, &b33, FV_EPROTO, "33 bytes");
    range_case("vec_end", "id", put_u, &u2_32, FV_EPROTO, "above");

    /* the round protocol; spec table values: round_start n 3, index 1, t 2, k 1 */
    static const uint64_t u1 = 1, u2 = 2, u4 = 4, u256 = 256, u65536 = 65536;
    static const int64_t i_below = (int64_t)INT32_MIN - 1;
    static const size_t b1 = 1, b64 = 64, b95 = 95, b97 = 97, b128 = 128;
    static const char *const with_job[] = {"job_offer",   "job_accept", "job_refuse",
                                           "round_start", "secagg",     "upload_go",
                                           "round_end",   "job_done",   "receipt"};
    for (size_t i = 0; i < sizeof(with_job) / sizeof(with_job[0]); i++) {
        range_case(with_job[i], "job", put_b, &b0, FV_EPROTO, "0 bytes, expected 32");
        range_case(with_job[i], "job", put_b, &b31, FV_EPROTO, "31 bytes, expected 32");
        range_case(with_job[i], "job", put_b, &b33, FV_EPROTO, "33 bytes, expected 32");
    }
    range_case("job_offer", "spec", put_b, &b0, FV_EPROTO, "0 bytes, outside 1..1048576");
    range_case("job_accept", "dsha", put_b, &b0, FV_EPROTO, "expected 32");
    range_case("job_accept", "dsha", put_b, &b31, FV_EPROTO, "expected 32");
    range_case("job_accept", "model", put_b, &b1, FV_EPROTO, "1 bytes, expected 0 (none) or 32");
    range_case("job_accept", "model", put_b, &b33, FV_EPROTO, "expected 0 (none) or 32");
    range_case("job_accept", "rows", put_i, &below, FV_EPROTO, "got a negative integer");
    range_case("job_refuse", "reason", put_s, s257, FV_EPROTO, "257 bytes");
    range_case("job_refuse", "reason", put_s, ctrl, FV_EPROTO, "control byte");
    range_case("job_refuse", "category", put_s, "", FV_EPROTO, "not a word");
    range_case("job_refuse", "category", put_s, "Schema", FV_EPROTO, "not a word");
    range_case("job_refuse", "category", put_s, "schema ", FV_EPROTO, "not a word");
    range_case("job_refuse", "category", put_s, "abcdefghijklmnopqrstuvwxyzabcdefg", FV_EPROTO,
               "33 bytes");
    range_case("round_start", "round", put_i, &below, FV_EPROTO, "expected an unsigned");
    range_case("round_start", "kind", put_u, &u0, FV_EPROTO, "not a round kind");
    range_case("round_start", "kind", put_u, &u256, FV_EPROTO, "not a round kind");
    range_case("round_start", "kind", put_u, &u2_32, FV_EPROTO, "above 4294967295");
    range_case("round_start", "n", put_u, &u2, FV_EPROTO, "2 agents, outside 3..65535");
    range_case("round_start", "n", put_u, &u65536, FV_EPROTO, "outside 3..65535");
    range_case("round_start", "n", put_u, &u2_32, FV_EPROTO, "above 4294967295");
    range_case("round_start", "index", put_u, &u3, FV_EPROTO, "3 is not below n 3");
    range_case("round_start", "index", put_u, &u2_32, FV_EPROTO, "above");
    range_case("round_start", "t", put_u, &u0, FV_EPROTO, "0 is outside 1..n (3)");
    range_case("round_start", "t", put_u, &u4, FV_EPROTO, "4 is outside 1..n (3)");
    range_case("round_start", "k", put_u, &u0, FV_EPROTO, "0 is outside 1..n-1 (2)");
    range_case("round_start", "k", put_u, &u3, FV_EPROTO, "3 is outside 1..n-1 (2)");
    range_case("round_start", "gseed", put_b, &b31, FV_EPROTO, "expected 32");
    range_case("round_start", "gseed", put_b, &b0, FV_EPROTO, "0 bytes, expected 32");
    range_case("round_start", "pks", put_b, &b95, FV_EPROTO, "95 bytes, expected n*32 = 96");
    range_case("round_start", "pks", put_b, &b97, FV_EPROTO, "97 bytes, expected n*32 = 96");
    range_case("round_start", "pks", put_b, &b64, FV_EPROTO, "expected n*32 = 96");
    range_case("round_start", "pks", put_b, &b128, FV_EPROTO, "expected n*32 = 96");
    range_case("round_start", "pks", put_b, &b0, FV_EPROTO, "0 bytes");
    range_case("round_start", "model", put_b, &b31, FV_EPROTO, "expected 0 (none) or 32");
    /* certs: exactly n entries of 1..4096 bytes, nothing after */
    static const raw_t c2 = {8, {0, 2, 'A', 'B', 0, 2, 'C', 'D'}};
    static const raw_t c3x = {13, {0, 2, 'A', 'B', 0, 2, 'C', 'D', 0, 2, 'E', 'F', 9}};
    static const raw_t c0 = {10, {0, 0, 0, 2, 'C', 'D', 0, 2, 'E', 'F'}};
    static const raw_t cbig = {12, {0x10, 0x01, 'A', 'B', 0, 2, 'C', 'D', 0, 2, 'E', 'F'}};
    static const raw_t ctr = {11, {0, 2, 'A', 'B', 0, 2, 'C', 'D', 0, 3, 'E'}};
    static const raw_t codd = {9, {0, 2, 'A', 'B', 0, 2, 'C', 'D', 0}};
    range_case("round_start", "certs", put_raw, &c2, FV_EPROTO, "2 entries, expected n = 3");
    range_case("round_start", "certs", put_raw, &c3x, FV_EPROTO, "1 bytes after the 3 entries");
    range_case("round_start", "certs", put_raw, &c0, FV_EPROTO,
               "entry 0 is 0 bytes, outside 1..4096");
    range_case("round_start", "certs", put_raw, &cbig, FV_EPROTO,
               "entry 0 is 4097 bytes, outside 1..4096");
    range_case("round_start", "certs", put_raw, &ctr, FV_EPROTO,
               "entry 2 announces 3 bytes, 1 remain");
    range_case("round_start", "certs", put_raw, &codd, FV_EPROTO, "2 entries, expected n = 3");
    range_case("round_start", "certs", put_s, "", FV_EPROTO, "expected binary");
    range_case("round_start", "nref", put_i, &below, FV_EPROTO, "expected an unsigned");
    range_case("secagg", "data", put_b, &b0, FV_EPROTO, "0 bytes, outside 1..4194304");
    range_case("secagg", "round", put_s, "1", FV_EPROTO, "expected an unsigned");
    range_case("upload_go", "round", put_i, &below, FV_EPROTO, "got a negative integer");
    range_case("round_end", "status", put_u, &u1, FV_EPROTO, "1 is positive");
    range_case("round_end", "status", put_u, &u2_32, FV_EPROTO, "is positive");
    range_case("round_end", "status", put_i, &i_below, FV_EPROTO, "-2147483649 is below");
    range_case("round_end", "status", put_s, "0", FV_EPROTO, "expected 0 or a negative integer");
    range_case("round_end", "reason", put_s, s257, FV_EPROTO, "257 bytes");
    range_case("job_done", "model", put_b, &b0, FV_EPROTO, "0 bytes, expected 32");
    range_case("job_done", "model", put_b, &b31, FV_EPROTO, "31 bytes, expected 32");
    range_case("job_done", "rounds", put_i, &below, FV_EPROTO, "expected an unsigned");

    /* the admin exchange and the receipt (table: cmd "job.abort", status -10014) */
    static char s65[66], s65537[65538];
    memset(s65, 'a', 65);
    memset(s65537, 'r', 65537);
    range_case("admin_req", "id", put_u, &u2_32, FV_EPROTO, "above 4294967295");
    range_case("admin_req", "id", put_i, &below, FV_EPROTO, "expected an unsigned");
    range_case("admin_req", "cmd", put_s, "", FV_EPROTO, "0 bytes, outside 1..64");
    range_case("admin_req", "cmd", put_s, s65, FV_EPROTO, "65 bytes, outside 1..64");
    range_case("admin_req", "cmd", put_s, "Status", FV_EPROTO, "byte 0 (0x53) is not in [a-z.]");
    range_case("admin_req", "cmd", put_s, "job show", FV_EPROTO, "byte 3 (0x20)");
    range_case("admin_req", "cmd", put_s, "job_show", FV_EPROTO, "byte 3 (0x5f)");
    range_case("admin_req", "cmd", put_s, "jobs2", FV_EPROTO, "byte 4 (0x32)");
    range_case("admin_req", "cmd", put_s, "job\xc3\xa9", FV_EPROTO, "byte 3 (0xc3)");
    range_case("admin_req", "args", put_s, "{\"a\":\x01}", FV_EPROTO,
               "control byte other than tab, LF, CR");
    range_case("admin_req", "args", put_s, "{\x0b}", FV_EPROTO, "control byte");
    range_case("admin_resp", "id", put_u, &u2_32, FV_EPROTO, "above 4294967295");
    range_case("admin_resp", "status", put_u, &u1, FV_EPROTO, "1 is positive");
    range_case("admin_resp", "status", put_u, &u2_32, FV_EPROTO, "is positive");
    range_case("admin_resp", "status", put_i, &i_below, FV_EPROTO, "-2147483649 is below");
    range_case("admin_resp", "status", put_s, "0", FV_EPROTO, "expected 0 or a negative integer");
    range_case("admin_resp", "body", put_s, "{\x1f}", FV_EPROTO, "control byte");
    range_case("admin_resp", "body", put_b, &b1, FV_EPROTO, "expected a string, got binary");
    range_case("admin_resp", "data", put_s, "abc", FV_EPROTO, "expected binary, got a string");
    range_case("receipt", "round", put_i, &below, FV_EPROTO, "expected an unsigned");
    range_case("receipt", "body", put_s, "", FV_EPROTO, "0 bytes, outside 1..65536");
    range_case("receipt", "body", put_s, s65537, FV_EPROTO, "65537 bytes, outside 1..65536");
    range_case("receipt", "body", put_s, "{\r\n\t\x7f\x1b}", FV_EPROTO, "control byte");
    range_case("receipt", "body", put_b, &b1, FV_EPROTO, "expected a string, got binary");
    range_case("receipt", "sig", put_b, &b0, FV_EPROTO, "0 bytes, an Ed25519 signature has 64");
    range_case("receipt", "sig", put_b, &b64 /* the table's length */, 0, NULL);
    static const size_t b63 = 63, b65 = 65;
    range_case("receipt", "sig", put_b, &b63, FV_EPROTO, "63 bytes, an Ed25519 signature has 64");
    range_case("receipt", "sig", put_b, &b65, FV_EPROTO, "65 bytes");

    /* the edges that pass */
    fv_wire_limits_t lim = deflim();
    mb_t *v = malloc(sizeof(*v)), *m = malloc(sizeof(*m));
    fv_msg_t out;
    fv_diag_t d = {""};
    CHECK(v != NULL && m != NULL);
    v->n = 0;
    mb_uint(v, chunk_max);
    build_with(m, spec_of("vec_begin"), "chunk", v->b, v->n);
    CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
    CHECK_UINT_EQ(out.u.vec_begin.chunk_elems, chunk_max);
    v->n = 0;
    mb_int(v, INT32_MIN);
    build_with(m, spec_of("error"), "code", v->b, v->n);
    CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
    CHECK_INT_EQ(out.u.error.code, INT32_MIN);
    v->n = 0;
    mb_int(v, INT32_MIN);
    build_with(m, spec_of("round_end"), "status", v->b, v->n);
    CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
    CHECK_INT_EQ(out.u.round_end.status, INT32_MIN);
    v->n = 0;
    mb_uint(v, 0); /* 0 as positive fixint 00 */
    build_with(m, spec_of("round_end"), "status", v->b, v->n);
    CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
    CHECK_INT_EQ(out.u.round_end.status, 0);
    /* 0 in a negative-int format is not its shortest encoding */
    build_with(m, spec_of("round_end"), "status", (const uint8_t[]){0xd0, 0x00}, 2);
    expect_refusal(m, &lim, FV_EPROTO, "round_end: field 'status': int8", "shortest");
    /* job_accept's "model": empty means none; 32 bytes a hash */
    build(m, spec_of("job_accept"), MUT_NONE, 0, 0);
    CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
    CHECK(!out.u.job_accept.has_model);
    CHECK_UINT_EQ(out.u.job_accept.rows, 1000);
    CHECK(memcmp(out.u.job_accept.data_sha256, sha, 32) == 0);
    v->n = 0;
    mb_bin(v, sha, 32);
    build_with(m, spec_of("job_accept"), "model", v->b, v->n);
    CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
    CHECK(out.u.job_accept.has_model);
    CHECK(memcmp(out.u.job_accept.model, sha, 32) == 0);
    /* round_start: the table's values land in the right fields */
    build(m, spec_of("round_start"), MUT_NONE, 0, 0);
    CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
    CHECK_UINT_EQ(out.u.round_start.kind, 2);
    CHECK_UINT_EQ(out.u.round_start.index, 1);
    CHECK_UINT_EQ(out.u.round_start.n, 3);
    CHECK_UINT_EQ(out.u.round_start.t, 2);
    CHECK_UINT_EQ(out.u.round_start.k, 1);
    CHECK_UINT_EQ(out.u.round_start.n_ref, 5000);
    CHECK_UINT_EQ(out.u.round_start.pks_len, 96);
    /* borrowed: pks's 96 bytes end before "model" (6 + 2 + 32), "nref" (5 + cd 1388) and
     * "certs" (6 + 2 + 12) */
    CHECK(out.u.round_start.pks == m->b + (m->n - (6 + 2 + 32) - (5 + 3) - (6 + 2 + 12) - 96));
    CHECK(out.u.round_start.certs == m->b + (m->n - 12));
    CHECK_UINT_EQ(out.u.round_start.certs_len, 12);
    CHECK(out.u.round_start.has_model);
    /* secagg data: any length, no multiple-of-4 rule (that is vec_chunk's) */
    build(m, spec_of("secagg"), MUT_NONE, 0, 0);
    CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
    CHECK_UINT_EQ(out.u.secagg.len, 3);
    /* releases */
    static const uint64_t u7 = 7, u8 = 8, u11 = 11, u65535 = FV_WIRE_RELEASE_SYNC_MAX,
                          file_over = FV_WIRE_FILE_MAX + 1;
    range_case("release", "body", put_s, "", FV_EPROTO, "outside 1..65536");
    range_case("release", "body", put_s, "a\x01", FV_EPROTO, "control byte");
    range_case("release_sync", "n", put_u, &u65536, FV_EPROTO, "above 65535");
    range_case("release_sync", "n", put_u, &u65535, 0, NULL);
    range_case("fetch", "sha256", put_b, &b31, FV_EPROTO, "31 bytes, expected 32");
    range_case("file_chunk", "sha256", put_b, &b33, FV_EPROTO, "33 bytes, expected 32");
    range_case("file_chunk", "total", put_u, &u0, FV_EPROTO, "outside 1..1073741824");
    range_case("file_chunk", "total", put_u, &file_over, FV_EPROTO, "outside 1..1073741824");
    range_case("file_chunk", "data", put_b, &b0, FV_EPROTO, "0 bytes");
    /* offset 5 + 3 bytes of data against total 10: 7 passes, 8 is the end, 11 past it */
    range_case("file_chunk", "offset", put_u, &u7, 0, NULL);
    range_case("file_chunk", "offset", put_u, &u8, FV_EPROTO, "passes the total 10");
    range_case("file_chunk", "offset", put_u, &u11, FV_EPROTO, "passes the total 10");
    range_case("file_chunk", "offset", put_u, &u2_32, FV_EPROTO, "passes the total");
    range_case("fetch_fail", "reason", put_s, ctrl, FV_EPROTO, "control byte");
    range_case("fetch_fail", "sha256", put_b, &b0, FV_EPROTO, "0 bytes, expected 32");
    /* schema discovery: a refusal names its category and carries no vocabulary */
    range_case("schema_query", "spec", put_b, &b0, FV_EPROTO, "0 bytes, outside 1..");
    range_case("schema_query", "job", put_b, &b31, FV_EPROTO, "31 bytes, expected 32");
    range_case("schema_vocab", "category", put_s, "Policy", FV_EPROTO, "not in [a-z]");
    range_case("schema_vocab", "category", put_s, "abcdefghijklmnopq", FV_EPROTO, "above 16");
    range_case("schema_vocab", "category", put_s, "", FV_EPROTO, "empty with a negative status");
    range_case("schema_vocab", "category", put_s, "schema", 0, NULL);
    range_case("schema_vocab", "body", put_s, "{}", FV_EPROTO, "with a negative status");
    { /* status 0 (a vocabulary) with the template's category: the category is refused */
        fv_wire_limits_t slim = deflim();
        mb_t *sv = malloc(sizeof(*sv)), *sm = malloc(sizeof(*sm));
        CHECK(sv != NULL && sm != NULL);
        sv->n = 0;
        put_u(sv, &u0);
        build_with(sm, spec_of("schema_vocab"), "status", sv->b, sv->n);
        expect_refusal(sm, &slim, FV_EPROTO, "schema_vocab: field 'category'",
                       "not empty with status 0");
        free(sv);
        free(sm);
    }
    range_case("schema_vocab", "status", put_u, &u3, FV_EPROTO, "positive");
    range_case("schema_vocab", "status", put_i, &below, FV_EPROTO, "below");

    /* a smaller max_vec_elems is the decoder's cap */
    lim.max_vec_elems = 999;
    build(m, spec_of("vec_begin"), MUT_NONE, 0, 0); /* n = 1000 */
    expect_refusal(m, &lim, FV_EPROTO, "vec_begin: field 'n'", "1..999");
    free(v);
    free(m);
}

/* A field too long for mb_t: the table's message with key's value replaced by a str32
 * (is_str) or bin32 of n bytes of fill, built in a heap buffer. */
static void big_case(const char *msg, const char *key, bool is_str, size_t n, char fill, int code,
                     const char *needle)
{
    fv_wire_limits_t lim = deflim();
    mb_t *m = malloc(sizeof(*m));
    CHECK(m != NULL);
    build_with(m, spec_of(msg), key, (const uint8_t[]){0xc1}, 1); /* 0xc1: a marker */
    const uint8_t *mark = memchr(m->b, 0xc1, m->n);
    CHECK(mark != NULL);
    size_t pre = (size_t)(mark - m->b), post = m->n - pre - 1;
    uint8_t *b = malloc(m->n + 5 + n);
    CHECK(b != NULL);
    memcpy(b, m->b, pre);
    b[pre] = is_str ? 0xdb : 0xc6;
    for (int i = 0; i < 4; i++)
        b[pre + 1 + i] = (uint8_t)(n >> (24 - 8 * i));
    memset(b + pre + 5, fill, n);
    memcpy(b + pre + 5 + n, mark + 1, post);
    fv_msg_t out;
    fv_diag_t d = {""};
    int r = fv_wire_decode(b, pre + 5 + n + post, &lim, &out, &d);
    if (r != code)
        FV__FAIL("%s '%s' of %zu bytes: decode returned %d (%s), expected %d", msg, key, n, r,
                 d.msg, code);
    if (needle != NULL)
        CHECK_CONTAINS(d.msg, needle);
    free(b);
    free(m);
}

static void test_admin_sizes(void)
{
    /* job_offer crl: up to FV_WIRE_CRL_MAX bytes */
    big_case("job_offer", "crl", false, FV_WIRE_CRL_MAX, '\0', 0, NULL);
    big_case("release_sync", "crl", false, FV_WIRE_CRL_MAX, '\0', 0, NULL);
    big_case("release_sync", "crl", false, FV_WIRE_CRL_MAX + 1, '\0', FV_EPROTO,
             "release_sync: field 'crl': 1048577 bytes, outside 0..1048576");
    /* the release envelope: up to FV_WIRE_RELEASE_MAX bytes of JSON text */
    big_case("release", "body", true, FV_WIRE_RELEASE_MAX, ' ', 0, NULL);
    big_case("release", "body", true, FV_WIRE_RELEASE_MAX + 1, ' ', FV_EPROTO,
             "release: field 'body'");
    big_case("job_offer", "crl", false, FV_WIRE_CRL_MAX + 1, '\0', FV_EPROTO,
             "job_offer: field 'crl': 1048577 bytes, outside 0..1048576");
    /* each JSON text and data field at its cap passes and one byte more is refused, in
     * the 4 MiB frame of an admin port (the default limits) */
    big_case("admin_req", "args", true, FV_WIRE_SPEC_MAX, ' ', 0, NULL);
    big_case("admin_req", "args", true, FV_WIRE_SPEC_MAX + 1, ' ', FV_EPROTO,
             "admin_req: field 'args': 1048577 bytes, outside 0..1048576");
    big_case("admin_req", "args", false, 70000, ' ', FV_EPROTO, "expected a string, got binary");
    big_case("admin_resp", "body", true, FV_WIRE_ADMIN_BODY_MAX, '\n', 0, NULL);
    big_case("admin_resp", "body", true, FV_WIRE_ADMIN_BODY_MAX + 1, '\n', FV_EPROTO,
             "admin_resp: field 'body': 2097153 bytes, outside 0..2097152");
    big_case("admin_resp", "body", true, 70000, '\0', FV_EPROTO, "control byte");
    big_case("admin_resp", "data", false, FV_WIRE_ADMIN_DATA_MAX, '\0', 0, NULL);
    big_case("admin_resp", "data", false, FV_WIRE_ADMIN_DATA_MAX + 1, '\0', FV_EPROTO,
             "admin_resp: field 'data': 1048577 bytes, outside 0..1048576");
    big_case("receipt", "body", true, FV_WIRE_RECEIPT_MAX + 1, 'r', FV_EPROTO,
             "receipt: field 'body': 65537 bytes, outside 1..65536");
    big_case("receipt", "body", true, FV_WIRE_RECEIPT_MAX, 'r', 0, NULL); /* str32 */
    /* str32 for a length a str16 holds is not the shortest encoding */
    big_case("receipt", "body", true, FV_WIRE_RECEIPT_MAX - 1, 'r', FV_EPROTO,
             "receipt: field 'body': str32 for fewer than 65536 bytes");

    /* a smaller frame cap still wins: the same 1 MiB of data in a 64 KiB frame */
    fv_wire_limits_t lim = deflim();
    lim.max_frame_bytes = 64u << 10;
    static uint8_t data[70000];
    fv_msg_t m;
    fv_buf_t out = {0};
    memset(&m, 0, sizeof(m));
    m.type = FV_MSG_ADMIN_RESP;
    m.u.admin_resp.body = S("{}");
    m.u.admin_resp.data = data;
    m.u.admin_resp.data_len = sizeof(data);
    CHECK_INT_EQ(fv_wire_encode(&m, &lim, &out), FV_ETOOBIG);
    CHECK_UINT_EQ(out.len, 0);
    lim.max_frame_bytes = FV_WIRE_ADMIN_FRAME_BYTES;
    CHECK_OK(fv_wire_encode(&m, &lim, &out), NULL);
    fv_buf_free(&out);

    /* the edges that pass: JSON whitespace and 0x7f in JSON text; "." alone is a cmd */
    mb_t *v = malloc(sizeof(*v)), *mm = malloc(sizeof(*mm));
    fv_diag_t d = {""};
    CHECK(v != NULL && mm != NULL);
    v->n = 0;
    mb_str(v, "{\t\"a\":\r\n\"\x7f\"}");
    build_with(mm, spec_of("admin_req"), "args", v->b, v->n);
    CHECK_OK(fv_wire_decode(mm->b, mm->n, &lim, &m, &d), &d);
    CHECK_UINT_EQ(m.u.admin_req.args.len, 12);
    CHECK_UINT_EQ(m.u.admin_req.id, 7);
    CHECK(str_eq(m.u.admin_req.cmd, S("job.abort")));
    v->n = 0;
    mb_str(v, ".");
    build_with(mm, spec_of("admin_req"), "cmd", v->b, v->n);
    CHECK_OK(fv_wire_decode(mm->b, mm->n, &lim, &m, &d), &d);
    v->n = 0;
    mb_str(v, "");
    build_with(mm, spec_of("admin_req"), "args", v->b, v->n);
    CHECK_OK(fv_wire_decode(mm->b, mm->n, &lim, &m, &d), &d);
    CHECK_UINT_EQ(m.u.admin_req.args.len, 0);
    v->n = 0;
    mb_int(v, INT32_MIN);
    build_with(mm, spec_of("admin_resp"), "status", v->b, v->n);
    CHECK_OK(fv_wire_decode(mm->b, mm->n, &lim, &m, &d), &d);
    CHECK_INT_EQ(m.u.admin_resp.status, INT32_MIN);
    CHECK_UINT_EQ(m.u.admin_resp.data_len, 3);
    /* borrowed: "data" is the body's last 3 bytes */
    CHECK(m.u.admin_resp.data == mm->b + mm->n - 3);
    v->n = 0;
    mb_uint(v, 0);
    build_with(mm, spec_of("admin_resp"), "status", v->b, v->n);
    CHECK_OK(fv_wire_decode(mm->b, mm->n, &lim, &m, &d), &d);
    CHECK_INT_EQ(m.u.admin_resp.status, 0);
    build_with(mm, spec_of("admin_resp"), "status", (const uint8_t[]){0xd0, 0x00}, 2);
    expect_refusal(mm, &lim, FV_EPROTO, "admin_resp: field 'status': int8", "shortest");
    build(mm, spec_of("receipt"), MUT_NONE, 0, 0);
    CHECK_OK(fv_wire_decode(mm->b, mm->n, &lim, &m, &d), &d);
    CHECK_UINT_EQ(m.u.receipt.round, 2);
    CHECK(memcmp(m.u.receipt.sig, sig64, 64) == 0);
    CHECK(memcmp(m.u.receipt.job, sha, 32) == 0);
    CHECK(str_eq(m.u.receipt.body, S("{\"r\":1}")));
    free(v);
    free(mm);
}

static void decode_raw(const char *hex, int code, const char *needle)
{
    fv_wire_limits_t lim = deflim();
    mb_t *m = malloc(sizeof(*m));
    CHECK(m != NULL);
    m->n = unhex(hex, m->b, sizeof(m->b));
    expect_refusal(m, &lim, code, needle, NULL);
    free(m);
}

static void test_body_refusals(void)
{
    /* a valid ping, for reference: 83 a176 01 a474797065 03 a3736571 05 */
    decode_raw("83 a176 01 a474797065 03 a3736571 05", 0, NULL);
    /* keys in another order are fine */
    decode_raw("83 a3736571 05 a474797065 03 a176 01", 0, NULL);

    decode_raw("", FV_EPROTO, "empty");
    decode_raw("93 01 03 05", FV_EPROTO, "not a msgpack map");
    decode_raw("05", FV_EPROTO, "not a msgpack map");
    decode_raw("de0003 a176 01 a474797065 03 a3736571 05", FV_EPROTO, "first byte 0xde");
    decode_raw("83 a176 01 a474797065 03 a3736571 05 00", FV_EPROTO, "1 trailing bytes");
    decode_raw("83 a176 01 a474797065 03 a3736571 05 83", FV_EPROTO, "trailing");
    decode_raw("83 a176 01 a474797065 03 a3736571", FV_EPROTO, "truncated");
    decode_raw("83 a176 01 a474797065 03 a37365", FV_EPROTO, "truncated");
    decode_raw("83 a176 01 a474797065 03 a3736571 cd00", FV_EPROTO, "truncated");
    decode_raw("83 a176 01 a474797065 03 a3736571 c1", FV_EPROTO, "0xc1");
    decode_raw("80", FV_EPROTO, "missing field 'v'");
    /* version: checked before anything type-specific */
    decode_raw("83 a176 02 a474797065 03 a3736571 05", FV_EVERSION, "version 2");
    decode_raw("82 a176 00 a474797065 63", FV_EVERSION, "version 0");
    decode_raw("81 a176 cf0000000100000000", FV_EVERSION, "version 4294967296");
    decode_raw("82 a176 a131 a474797065 03", FV_EPROTO, "field 'v'");
    /* type */
    decode_raw("81 a176 01", FV_EPROTO, "missing field 'type'");
    decode_raw("82 a176 01 a474797065 00", FV_EPROTO, "unknown message type 0");
    decode_raw("82 a176 01 a474797065 1e", FV_EPROTO, "unknown message type 30");
    decode_raw("82 a176 01 a474797065 ccc8", FV_EPROTO, "unknown message type 200");
    decode_raw("82 a176 01 a474797065 ff", FV_EPROTO, "field 'type'");
    /* keys must be strings */
    decode_raw("83 a176 01 a474797065 03 01 05", FV_EPROTO, "key 2");
    decode_raw("83 a176 01 a474797065 03 c403736571 05", FV_EPROTO, "not a string");
    /* an unknown key is quoted safely */
    decode_raw("84 a176 01 a474797065 03 a3736571 05 a3 0a 27 41 00", FV_EPROTO,
               "ping: unknown field '\\x0a\\x27A'");
    /* shortest encodings only */
    decode_raw("83 a176 01 a474797065 03 a3736571 cc05", FV_EPROTO,
               "ping: field 'seq': uint8 for a value below 128");
    decode_raw("83 a176 01 a474797065 03 a3736571 d005", FV_EPROTO, "int8");
    decode_raw("83 a176 01 a474797065 03 a3736571 d1ff80", FV_EPROTO, "int16");
    decode_raw("83 a176 cc01 a474797065 03 a3736571 05", FV_EPROTO, "field 'v': uint8");
    decode_raw("83 a176 01 a474797065 03 d903736571 05", FV_EPROTO, "key 'seq': str8");
    decode_raw("83 a176 01 a474797065 03 a3736571 cf0000000000000005", FV_EPROTO, "uint64");
    decode_raw("84 a176 01 a474797065 06 a3736571 05 a4626f6479 c50001 61", FV_EPROTO,
               "field 'body': bin16");
    decode_raw("84 a176 01 a474797065 06 a3736571 05 a4626f6479 c400", 0, NULL);
    /* nesting: the gate counts objects before msgpack-c allocates for them */
    decode_raw("83 a176 01 a474797065 03 a3736571 ddffffffff", FV_EPROTO, "more than 64");
    decode_raw("83 a176 01 a474797065 03 a3736571 dfffffffff", FV_EPROTO, "more than 64");
    decode_raw("83 a176 01 a474797065 03 a3736571 dc0010 00000000000000000000000000000000",
               FV_EPROTO, "ping: field 'seq': expected an unsigned integer, got an array");
    decode_raw("83 a176 01 a474797065 03 a3736571 "
               "9f 9f 9f 9f 9f 00000000000000000000000000000000",
               FV_EPROTO, "more than 64");
    /* nesting: msgpack-c gives up at 32 levels with "out of memory"; the gate stops at 8 */
    decode_raw("83 a176 01 a474797065 03 a3736571 91919191919191 00", FV_EPROTO,
               "ping: field 'seq': expected an unsigned integer, got an array");
    decode_raw("83 a176 01 a474797065 03 a3736571 9191919191919191 00", FV_EPROTO,
               "ping: field 'seq': expected an unsigned integer, got an array");
    decode_raw("83 a176 01 a474797065 03 a3736571 919191919191919191 00", FV_EPROTO,
               "nested deeper than 8 levels");
    decode_raw("83 a176 01 a474797065 03 a3736571 "
               "9191919191919191919191919191919191919191919191919191919191919191919191919191 00",
               FV_EPROTO, "nested deeper");
    decode_raw("83 a176 01 a474797065 03 a3736571 d6ff00000000", FV_EPROTO, "got an extension");

    /* frame-size cap */
    fv_wire_limits_t lim = deflim();
    lim.max_frame_bytes = 4096;
    static uint8_t body[4097];
    fv_msg_t out;
    fv_diag_t d = {""};
    CHECK_INT_EQ(fv_wire_decode(body, sizeof(body), &lim, &out, &d), FV_ETOOBIG);
    CHECK_CONTAINS(d.msg, "4097 bytes");
    uint8_t hdr[4] = {0, 0, 0x10, 0x01};
    uint32_t len = 0;
    CHECK_INT_EQ(fv_wire_frame_len(hdr, &lim, &len, &d), FV_ETOOBIG);
    hdr[3] = 0;
    CHECK_OK(fv_wire_frame_len(hdr, &lim, &len, &d), &d);
    CHECK_UINT_EQ(len, 4096);
    memset(hdr, 0, 4);
    CHECK_INT_EQ(fv_wire_frame_len(hdr, &lim, &len, &d), FV_EPROTO);
    memset(hdr, 0xff, 4);
    CHECK_INT_EQ(fv_wire_frame_len(hdr, &lim, &len, &d), FV_ETOOBIG);
    /* NULL diag is fine */
    CHECK_INT_EQ(fv_wire_decode(body, 1, &lim, &out, NULL), FV_EPROTO);
}

/* ---- framer ----------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A stream of n_frames varied frames. */
static void make_stream(fv_buf_t *s, fv_msg_t *msgs, int n_frames, uint8_t *payload)
{
    fv_wire_limits_t lim = deflim();
    for (int i = 0; i < n_frames; i++) {
        fv_msg_t *m = &msgs[i];
        memset(m, 0, sizeof(*m));
        switch (i % 4) {
        case 0:
            m->type = FV_MSG_PING;
            m->u.ping.seq = (uint64_t)i * 1000003u;
            break;
        case 1:
            m->type = FV_MSG_ECHO;
            m->u.echo.seq = (uint64_t)i;
            m->u.echo.body = payload;
            m->u.echo.body_len = (size_t)(i * 37) % 2000;
            break;
        case 2:
            m->type = FV_MSG_BYE;
            m->u.bye.reason = S("later");
            break;
        default:
            m->type = FV_MSG_VEC_CHUNK;
            m->u.vec_chunk.id = (uint32_t)i;
            m->u.vec_chunk.data = payload;
            m->u.vec_chunk.len = 4 * (size_t)(1 + i);
            break;
        }
        CHECK_OK(fv_wire_encode(m, &lim, s), NULL);
    }
}

/* Feeds s in slices of random length (1 byte each if max_slice is 1); every frame must
 * come out whole, in order. */
static void feed_stream(const fv_buf_t *s, const fv_msg_t *msgs, int n_frames, size_t max_slice)
{
    fv_wire_limits_t lim = deflim();
    fv_framer_t f;
    fv_framer_init(&f, &lim);
    size_t pos = 0;
    int got = 0;
    while (pos < s->len) {
        size_t k = max_slice == 1 ? 1 : 1 + (size_t)(rnd() % max_slice);
        if (k > s->len - pos)
            k = s->len - pos;
        const uint8_t *in = s->data + pos;
        size_t left = k;
        for (;;) {
            size_t used = 0;
            const uint8_t *body = NULL;
            size_t blen = 0;
            fv_diag_t d = {""};
            int r = fv_framer_feed(&f, in, left, &used, &body, &blen, &d);
            CHECK(r == 0 || r == 1);
            CHECK(used <= left);
            in += used;
            left -= used;
            if (r == 0) {
                CHECK_UINT_EQ(left, 0);
                break;
            }
            fv_msg_t m;
            CHECK(got < n_frames);
            CHECK_OK(fv_wire_decode(body, blen, &lim, &m, &d), &d);
            CHECK(msg_eq(&m, &msgs[got]));
            got++;
        }
        pos += k;
    }
    CHECK_INT_EQ(got, n_frames);
    CHECK(f.hdr_have == 0 || f.body_have == f.body_len);
    fv_framer_close(&f);
    fv_framer_close(NULL);
}

static void test_framer(void)
{
    enum { NF = 40 };
    fv_msg_t msgs[NF];
    static uint8_t payload[4096];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)rnd();
    fv_buf_t s = {0};
    make_stream(&s, msgs, NF, payload);
    feed_stream(&s, msgs, NF, 1);
    for (int round = 0; round < 20; round++)
        feed_stream(&s, msgs, NF, round < 10 ? 7 : 3000);
    feed_stream(&s, msgs, NF, s.len); /* big slices: several frames per call */

    /* whole stream in one call: one frame per return, then 0 with nothing left */
    fv_wire_limits_t lim = deflim();
    fv_framer_t f;
    fv_framer_init(&f, &lim);
    size_t pos = 0;
    int got = 0;
    for (;;) {
        size_t used = 0, blen = 0;
        const uint8_t *body = NULL;
        int r = fv_framer_feed(&f, s.data + pos, s.len - pos, &used, &body, &blen, NULL);
        pos += used;
        if (r == 0)
            break;
        CHECK_INT_EQ(r, 1);
        got++;
    }
    CHECK_INT_EQ(got, NF);
    CHECK_UINT_EQ(pos, s.len);
    fv_framer_close(&f);
    fv_buf_free(&s);
}

static void test_framer_bad_headers(void)
{
    fv_wire_limits_t lim = deflim();
    lim.max_frame_bytes = 4096;
    static const uint8_t over[] = {0x00, 0x00, 0x10, 0x01, 0xaa};
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    static const uint8_t zero[] = {0, 0, 0, 0, 0x80};
    const uint8_t *hdrs[] = {over, huge, zero};
    const int codes[] = {FV_ETOOBIG, FV_ETOOBIG, FV_EPROTO};
    for (int i = 0; i < 3; i++) {
        fv_framer_t f;
        fv_framer_init(&f, &lim);
        size_t used = 99, blen = 0;
        const uint8_t *body = NULL;
        fv_diag_t d = {""};
        /* header in two pieces: nothing decided before the 4th byte */
        CHECK_INT_EQ(fv_framer_feed(&f, hdrs[i], 3, &used, &body, &blen, &d), 0);
        CHECK_UINT_EQ(used, 3);
        CHECK_INT_EQ(fv_framer_feed(&f, hdrs[i] + 3, 1, &used, &body, &blen, &d), codes[i]);
        CHECK_UINT_EQ(used, 1);
        CHECK(f.body == NULL); /* refused before allocating */
        CHECK_CONTAINS(d.msg, "wire frame");
        /* and the framer stays dead */
        CHECK(fv_framer_feed(&f, hdrs[i], 4, &used, &body, &blen, &d) < 0);
        CHECK_UINT_EQ(used, 0);
        fv_framer_close(&f);
    }
    /* a frame of exactly the cap passes the framer */
    fv_framer_t f;
    fv_framer_init(&f, &lim);
    uint8_t *buf = calloc(1, 4 + 4096);
    CHECK(buf != NULL);
    buf[2] = 0x10;
    size_t used = 0, blen = 0;
    const uint8_t *body = NULL;
    CHECK_INT_EQ(fv_framer_feed(&f, buf, 4 + 4096, &used, &body, &blen, NULL), 1);
    CHECK_UINT_EQ(blen, 4096);
    CHECK_UINT_EQ(used, 4 + 4096);
    free(buf);
    fv_framer_close(&f);
}

/* ---- chunked vectors ------------------------------------------------------------------- */

/* Runs tx -> (encode, framer, decode) -> rx over a whole vector; returns rx_end's code. */
static void send_all(fv_vec_tx_t *tx, fv_msg_t *msgs, int *n_msgs, int cap)
{
    *n_msgs = 0;
    fv_msg_t m;
    while (fv_vec_tx_next(tx, &m) == 1) {
        CHECK(*n_msgs < cap);
        msgs[(*n_msgs)++] = m;
    }
    CHECK_INT_EQ(m.type, FV_MSG_VEC_END);
    CHECK_INT_EQ(fv_vec_tx_next(tx, &m), 0);
    CHECK_INT_EQ(m.type, FV_MSG_VEC_END); /* untouched when nothing is left */
}

static void test_vec_roundtrip(void)
{
    enum { N = 1000, CH = 64 }; /* 15 full chunks and one of 40 */
    float *v = malloc(N * sizeof(float)), *w = malloc(N * sizeof(float));
    CHECK(v != NULL && w != NULL);
    for (int i = 0; i < N; i++)
        v[i] = (float)i * 0.25f - 17.0f;
    fv_wire_limits_t lim = deflim();
    fv_vec_tx_t tx;
    CHECK_OK(fv_vec_tx_init(&tx, 42, FV_VEC_F32, v, N, CH, "layer0.weight"), NULL);

    fv_buf_t stream = {0};
    fv_msg_t m;
    int n_frames = 0;
    while (fv_vec_tx_next(&tx, &m) == 1) {
        CHECK_OK(fv_wire_encode(&m, &lim, &stream), NULL);
        n_frames++;
    }
    CHECK_INT_EQ(n_frames, 1 + 16 + 1);
    fv_vec_tx_close(&tx);

    /* the digest is SHA-256 of the little-endian element bytes (x86: the memory) */
    fv_framer_t f;
    fv_framer_init(&f, &lim);
    fv_vec_rx_t rx;
    memset(&rx, 0, sizeof(rx));
    size_t pos = 0;
    int stage = 0;
    memset(w, 0, N * sizeof(float));
    while (pos < stream.len) {
        size_t used = 0, blen = 0;
        const uint8_t *body = NULL;
        fv_diag_t d = {""};
        size_t k = 1 + (size_t)(rnd() % 1000);
        if (k > stream.len - pos)
            k = stream.len - pos;
        int r = fv_framer_feed(&f, stream.data + pos, k, &used, &body, &blen, &d);
        CHECK(r >= 0);
        pos += used;
        if (r == 0)
            continue;
        CHECK_OK(fv_wire_decode(body, blen, &lim, &m, &d), &d);
        if (m.type == FV_MSG_VEC_BEGIN) {
            CHECK_INT_EQ(stage, 0);
            CHECK_UINT_EQ(m.u.vec_begin.n_elems, N);
            CHECK(str_eq(m.u.vec_begin.name, S("layer0.weight")));
            CHECK_OK(fv_vec_rx_begin(&rx, &m, &lim, &d), &d);
            stage = 1;
        } else if (m.type == FV_MSG_VEC_CHUNK) {
            CHECK_OK(fv_vec_rx_chunk(&rx, &m, w, &d), &d);
        } else {
            CHECK_INT_EQ(m.type, FV_MSG_VEC_END);
            CHECK_OK(fv_vec_rx_end(&rx, &m, &d), &d);
            stage = 2;
        }
    }
    CHECK_INT_EQ(stage, 2);
    CHECK(memcmp(v, w, N * sizeof(float)) == 0);
    CHECK(!rx.active);
    fv_framer_close(&f);
    fv_buf_free(&stream);

    /* n smaller than one chunk; n a multiple of the chunk */
    uint32_t u[12];
    for (uint32_t i = 0; i < 12; i++)
        u[i] = 0x01020304u * (i + 1);
    const uint64_t ns[] = {1, 5, 12, 12};
    const uint32_t cs[] = {100, 100, 4, 1};
    for (int t = 0; t < 4; t++) {
        fv_msg_t msgs[20];
        int nm = 0;
        uint32_t out[12] = {0};
        fv_diag_t d = {""};
        CHECK_OK(fv_vec_tx_init(&tx, 1, FV_VEC_U32, u, ns[t], cs[t], "u"), NULL);
        send_all(&tx, msgs, &nm, 20);
        CHECK_INT_EQ(nm, 2 + (int)((ns[t] + cs[t] - 1) / cs[t]));
        CHECK_OK(fv_vec_rx_begin(&rx, &msgs[0], &lim, &d), &d);
        for (int i = 1; i < nm - 1; i++)
            CHECK_OK(fv_vec_rx_chunk(&rx, &msgs[i], out, &d), &d);
        CHECK_OK(fv_vec_rx_end(&rx, &msgs[nm - 1], &d), &d);
        CHECK(memcmp(out, u, ns[t] * 4) == 0);
        fv_vec_tx_close(&tx);
    }
    free(v);
    free(w);
}

/* Delivers msgs to a fresh receiver; returns the first error and which message. */
static int deliver(fv_msg_t *msgs, int nm, void *dst, int *ret_at, fv_diag_t *d)
{
    fv_wire_limits_t lim = deflim();
    fv_vec_rx_t rx;
    memset(&rx, 0, sizeof(rx));
    for (int i = 0; i < nm; i++) {
        int r;
        *ret_at = i;
        switch (msgs[i].type) {
        case FV_MSG_VEC_BEGIN:
            r = fv_vec_rx_begin(&rx, &msgs[i], &lim, d);
            break;
        case FV_MSG_VEC_CHUNK:
            r = fv_vec_rx_chunk(&rx, &msgs[i], dst, d);
            break;
        default:
            r = fv_vec_rx_end(&rx, &msgs[i], d);
            break;
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static void test_vec_refusals(void)
{
    enum { N = 10, CH = 4 }; /* begin, 3 chunks (4, 4, 2), end */
    uint32_t v[N], out[N];
    for (uint32_t i = 0; i < N; i++)
        v[i] = 1000 + i;
    fv_vec_tx_t tx;
    fv_msg_t good[5], msgs[6];
    int nm = 0, at = -1;
    fv_diag_t d = {""};
    CHECK_OK(fv_vec_tx_init(&tx, 7, FV_VEC_U32, v, N, CH, "v"), NULL);
    send_all(&tx, good, &nm, 5);
    CHECK_INT_EQ(nm, 5);
    CHECK_OK(deliver(good, 5, out, &at, &d), &d);

    /* out of order: chunks 0, 2 */
    memcpy(msgs, good, sizeof(good));
    msgs[2] = good[3];
    CHECK_INT_EQ(deliver(msgs, 5, out, &at, &d), FV_EPROTO);
    CHECK_INT_EQ(at, 2);
    CHECK_CONTAINS(d.msg, "chunk 2, expected 1");
    /* a repeated chunk */
    memcpy(msgs, good, sizeof(good));
    msgs[2] = good[1];
    CHECK_INT_EQ(deliver(msgs, 5, out, &at, &d), FV_EPROTO);
    CHECK_CONTAINS(d.msg, "chunk 0, expected 1");
    /* wrong id on a chunk, and on the end */
    memcpy(msgs, good, sizeof(good));
    msgs[1].u.vec_chunk.id = 8;
    CHECK_INT_EQ(deliver(msgs, 5, out, &at, &d), FV_EPROTO);
    CHECK_CONTAINS(d.msg, "vector id 8, expected 7");
    memcpy(msgs, good, sizeof(good));
    msgs[4].u.vec_end.id = 6;
    CHECK_INT_EQ(deliver(msgs, 5, out, &at, &d), FV_EPROTO);
    CHECK_INT_EQ(at, 4);
    /* short and long chunks (the middle one and the last one) */
    memcpy(msgs, good, sizeof(good));
    msgs[2].u.vec_chunk.len -= 4;
    CHECK_INT_EQ(deliver(msgs, 5, out, &at, &d), FV_EPROTO);
    CHECK_CONTAINS(d.msg, "holds 12 bytes, expected 16");
    memcpy(msgs, good, sizeof(good));
    msgs[3].u.vec_chunk.len += 4;
    CHECK_INT_EQ(deliver(msgs, 5, out, &at, &d), FV_EPROTO);
    CHECK_CONTAINS(d.msg, "holds 12 bytes, expected 8");
    /* end before the last chunk; a chunk after all elements */
    memcpy(msgs, good, sizeof(good));
    msgs[3] = good[4];
    CHECK_INT_EQ(deliver(msgs, 4, out, &at, &d), FV_EPROTO);
    CHECK_CONTAINS(d.msg, "8 of 10 elements");
    memcpy(msgs, good, 4 * sizeof(fv_msg_t));
    msgs[4] = good[3];
    msgs[4].u.vec_chunk.seq = 3;
    msgs[5] = good[4];
    CHECK_INT_EQ(deliver(msgs, 6, out, &at, &d), FV_EPROTO);
    CHECK_CONTAINS(d.msg, "after all 10 elements");
    /* bad digest */
    memcpy(msgs, good, sizeof(good));
    msgs[4].u.vec_end.sha256[31] ^= 1;
    CHECK_INT_EQ(deliver(msgs, 5, out, &at, &d), FV_EAUTH);
    CHECK_CONTAINS(d.msg, "SHA-256");
    /* every flipped bit of the data fails the digest */
    uint8_t copy[16];
    int n_flips = 0;
    for (int c = 1; c <= 3; c++) {
        for (size_t bit = 0; bit < good[c].u.vec_chunk.len * 8; bit++) {
            memcpy(msgs, good, sizeof(good));
            memcpy(copy, good[c].u.vec_chunk.data, good[c].u.vec_chunk.len);
            copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            msgs[c].u.vec_chunk.data = copy;
            CHECK_INT_EQ(deliver(msgs, 5, out, &at, &d), FV_EAUTH);
            n_flips++;
        }
    }
    CHECK_INT_EQ(n_flips, N * 32);
    /* chunk or end with no begin; begin with a wrong message */
    CHECK_INT_EQ(deliver(good + 1, 4, out, &at, &d), FV_EPHASE);
    CHECK_INT_EQ(deliver(good + 4, 1, out, &at, &d), FV_EPHASE);
    fv_vec_rx_t rx;
    memset(&rx, 0, sizeof(rx));
    fv_wire_limits_t lim = deflim();
    CHECK_INT_EQ(fv_vec_rx_begin(&rx, &good[1], &lim, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_rx_chunk(&rx, &good[0], out, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_rx_end(&rx, &good[1], &d), FV_EINVAL);
    /* after an error the transfer is over */
    CHECK_OK(fv_vec_rx_begin(&rx, &good[0], &lim, &d), &d);
    CHECK_INT_EQ(fv_vec_rx_chunk(&rx, &good[2], out, &d), FV_EPROTO);
    CHECK_INT_EQ(fv_vec_rx_chunk(&rx, &good[1], out, &d), FV_EPHASE);
    /* n above the receiver's cap; chunk above its frame */
    lim.max_vec_elems = N - 1;
    CHECK_INT_EQ(fv_vec_rx_begin(&rx, &good[0], &lim, &d), FV_EPROTO);
    CHECK_CONTAINS(d.msg, "field 'n': 10 elements, outside 1..9");
    CHECK(!rx.active);
    lim = deflim();
    msgs[0] = good[0];
    msgs[0].u.vec_begin.chunk_elems = ((4u << 20) - 64) / 4 + 1;
    CHECK_INT_EQ(fv_vec_rx_begin(&rx, &msgs[0], &lim, &d), FV_EPROTO);
    msgs[0].u.vec_begin.chunk_elems = 0;
    CHECK_INT_EQ(fv_vec_rx_begin(&rx, &msgs[0], &lim, &d), FV_EPROTO);
    msgs[0] = good[0];
    msgs[0].u.vec_begin.dtype = (fv_vec_dtype_t)9;
    CHECK_INT_EQ(fv_vec_rx_begin(&rx, &msgs[0], &lim, &d), FV_EPROTO);
    fv_vec_tx_close(&tx);
    fv_vec_tx_close(NULL);

    /* sender-side refusals */
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, FV_VEC_U32, v, 0, 4, "v"), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, FV_VEC_U32, v, N, 0, "v"), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, FV_VEC_U32, NULL, N, 4, "v"), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, (fv_vec_dtype_t)0, v, N, 4, "v"), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, FV_VEC_U32, v, N, 4, ""), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, FV_VEC_U32, v, N, 4, "a\nb"), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, FV_VEC_U32, v, N, 4, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, FV_VEC_U32, v, FV_WIRE_VEC_ELEMS_CEILING + 1, 4, "v"),
                 FV_EINVAL);
    CHECK_INT_EQ(fv_vec_tx_init(&tx, 1, FV_VEC_U32, v, N, FV_WIRE_FRAME_MAX_CEILING / 4, "v"),
                 FV_EINVAL);
}

/* The digest is over the little-endian bytes: a known answer computed independently
 * (sha256sum of the 8 bytes 01 00 00 00 02 00 00 00). */
static void test_vec_digest_kat(void)
{
    const uint32_t v[2] = {1, 2};
    fv_vec_tx_t tx;
    fv_msg_t msgs[4];
    int nm = 0;
    CHECK_OK(fv_vec_tx_init(&tx, 3, FV_VEC_U32, v, 2, 2, "kat"), NULL);
    send_all(&tx, msgs, &nm, 4);
    CHECK_INT_EQ(nm, 3);
    static const uint8_t le[8] = {1, 0, 0, 0, 2, 0, 0, 0};
    check_bytes(msgs[1].u.vec_chunk.data, msgs[1].u.vec_chunk.len, le, 8);
    uint8_t want[32];
    fv_test_unhex("34fb5c825de7ca4aea6e712f19d439c1da0c92c37b423936c5f618545ca4fa1f", want, 32);
    check_bytes(msgs[2].u.vec_end.sha256, 32, want, 32);
    fv_vec_tx_close(&tx);
}

/* JOB_REFUSE "category": every word round-trips, a message without the field (an older
 * agent's) decodes as "unknown" (and "unknown" encodes as the field left out), a word that
 * is not a category of this protocol version ("unknown" itself included) is refused. */
static void test_refuse_category(void)
{
    static const char *const words[] = {"schema", "policy",   "version", "resources",
                                        "data",   "protocol", "unknown"};
    for (int i = 0; i <= FV_REFUSE_UNKNOWN; i++) {
        CHECK_STR_EQ(fv_refuse_category_name((fv_refuse_category_t)i), words[i]);
        CHECK_INT_EQ(fv_refuse_category_parse(words[i], strlen(words[i])), i);
    }
    CHECK_STR_EQ(fv_refuse_category_name((fv_refuse_category_t)99), "unknown");
    CHECK_INT_EQ(fv_refuse_category_parse("schemas", 6), FV_REFUSE_SCHEMA); /* len counts */
    CHECK_INT_EQ(fv_refuse_category_parse("schemas", 7), FV_REFUSE_UNKNOWN);
    CHECK_INT_EQ(fv_refuse_category_parse(NULL, 0), FV_REFUSE_UNKNOWN);
    fv_wire_limits_t lim = deflim();
    mb_t *v = malloc(sizeof(*v)), *m = malloc(sizeof(*m));
    CHECK(v != NULL && m != NULL);
    const struct {
        const char *word;
        fv_refuse_category_t want;
    } cases[] = {{"policy", FV_REFUSE_POLICY},
                 {"quota", FV_REFUSE_UNKNOWN},
                 {"data", FV_REFUSE_DATA},
                 {"unknown", FV_REFUSE_UNKNOWN},
                 {"out_of_disk", FV_REFUSE_UNKNOWN}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        v->n = 0;
        mb_str(v, cases[i].word);
        build_with(m, spec_of("job_refuse"), "category", v->b, v->n);
        fv_msg_t out;
        fv_diag_t d = {""};
        if (cases[i].want == FV_REFUSE_UNKNOWN) {
            CHECK_INT_EQ(fv_wire_decode(m->b, m->n, &lim, &out, &d), FV_EPROTO);
            CHECK(strstr(d.msg, "not one of schema") != NULL);
            continue;
        }
        CHECK_OK(fv_wire_decode(m->b, m->n, &lim, &out, &d), &d);
        CHECK_INT_EQ(out.u.job_refuse.category, cases[i].want);
        CHECK(out.u.job_refuse.reason.len == 4);
    }
    /* the encoder writes the word: "resources" after "reason" */
    fv_msg_t e = {.type = FV_MSG_JOB_REFUSE};
    e.u.job_refuse.reason.ptr = "r";
    e.u.job_refuse.reason.len = 1;
    e.u.job_refuse.category = FV_REFUSE_RESOURCES;
    fv_buf_t enc = {0};
    CHECK_OK(fv_wire_encode(&e, &lim, &enc), NULL);
    static const uint8_t tail[] = {0xa8, 'c', 'a', 't', 'e', 'g', 'o', 'r', 'y', 0xa9,
                                   'r',  'e', 's', 'o', 'u', 'r', 'c', 'e', 's'};
    CHECK(enc.len > sizeof tail);
    check_bytes(enc.data + enc.len - sizeof tail, sizeof tail, tail, sizeof tail);
    fv_buf_free(&enc);
    /* "unknown" is written as no field at all: the message an older agent sends */
    e.u.job_refuse.category = FV_REFUSE_UNKNOWN;
    CHECK_OK(fv_wire_encode(&e, &lim, &enc), NULL);
    CHECK(memmem(enc.data, enc.len, "category", 8) == NULL);
    fv_buf_free(&enc);
    free(v);
    free(m);
}

int main(void)
{
    test_known_answers();
    test_roundtrip_all_types();
    test_encode_refusals();
    test_limits();
    test_field_refusals();
    test_range_refusals();
    test_refuse_category();
    test_admin_sizes();
    test_body_refusals();
    test_framer();
    test_framer_bad_headers();
    test_vec_roundtrip();
    test_vec_refusals();
    test_vec_digest_kat();
    puts("test_wire: ok");
    return 0;
}
