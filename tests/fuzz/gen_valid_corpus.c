/* gen_valid_corpus.c - writes the seed corpus of fuzz_valid.c (tests/fuzz/corpus/valid/)
 * from real messages of its fixed statement (fuzz_valid_spec.h), made with the public API
 * and seeded randomness, so the seeds reach the checks past the decoding.
 *
 *   ninja -C build tests/fuzz/gen_valid_corpus
 *   build/tests/fuzz/gen_valid_corpus tests/fuzz/corpus/valid
 *
 * Not a test and not built by default; rerun it when the message formats change (the
 * seeds then still decode as far as they can, but reach less). Seeds, by name:
 *   holder-x{1,2,3}        an honest proof's header and the payload of holder x
 *   holder-false           a proof of a false statement (bins not summing): passes the
 *                          holder check, fails the decision
 *   holder-x0, holder-x4   invalid holder indices; holder-swapped: holder 1 given holder
 *                          2's payload; holder-short: the payload cut by one element
 *   decide-{3,2,1}         the honest proof's vshares from 3, 2 (threshold) and 1 holder
 *   decide-false           the false proof's three vshares (a "bin_sum" verdict)
 *   decide-outlier         three vshares, one element of holder 2's off by one
 *   aggregate-{3,2}        aggshares of the honest and the false prover's inputs
 *   aggregate-outlier      three, one element of holder 3's off by one
 *   bad-empty, bad-truncated  nothing; holder-x1 cut inside the header
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_valid_spec.h"
#include "fv_crypto.h"
#include "fv_gf61.h"
#include "fv_valid.h"

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *p, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
}

static void put_u8(buf_t *b, uint32_t v)
{
    uint8_t c = (uint8_t)v;
    put(b, &c, 1);
}

static void put_u16(buf_t *b, size_t v)
{
    if (v > 0xffff) {
        fprintf(stderr, "gen_valid_corpus: a message of %zu bytes does not fit a u16\n", v);
        exit(1);
    }
    put_u8(b, (uint32_t)(v & 0xff));
    put_u8(b, (uint32_t)(v >> 8));
}

static void write_seed(const char *dir, const char *name, buf_t *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
        fprintf(stderr, "gen_valid_corpus: cannot write %s\n", path);
        exit(1);
    }
    printf("%s: %zu bytes\n", path, b->len);
    b->len = 0;
}

static void ok(int rc, const fv_diag_t *d, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "gen_valid_corpus: %s failed (%s): %s\n", what, fv_err_name(rc),
                d ? d->msg : "");
        exit(1);
    }
}

typedef struct proved {
    fv_valid_proof_t *pf;
    fv_valid_held_t *held[FUZZ_VALID_N];
    uint8_t *vs[FUZZ_VALID_N];
    size_t vlen[FUZZ_VALID_N];
} proved_t;

static void prove_all(const fuzz_valid_spec_t *f, const int64_t *w, uint64_t seed, proved_t *p)
{
    fv_rand_t rng;
    fv_rand_seeded_u64(&rng, seed);
    fv_diag_t d = {""};
    ok(fv_valid_prove_unchecked(&f->spec, FUZZ_VALID_N, FUZZ_VALID_T, f->ctx, w, &rng, &p->pf, &d),
       &d, "prove");
    for (uint32_t x = 1; x <= FUZZ_VALID_N; x++)
        ok(fv_valid_holder_check(&f->spec, FUZZ_VALID_N, FUZZ_VALID_T, x, f->ctx, p->pf->header,
                                 p->pf->header_len, p->pf->payloads[x - 1], p->pf->payload_len,
                                 &p->held[x - 1], &p->vs[x - 1], &p->vlen[x - 1], &d),
           &d, "holder check");
}

static void holder_seed(buf_t *b, uint32_t x, const proved_t *p, uint32_t payload_of, size_t cut)
{
    put_u8(b, 0);
    put_u8(b, x);
    put_u16(b, p->pf->header_len);
    put(b, p->pf->header, p->pf->header_len);
    put(b, p->pf->payloads[payload_of - 1], p->pf->payload_len - cut);
}

static void decide_seed(buf_t *b, const proved_t *p, uint32_t count, const uint8_t *const *vs)
{
    put_u8(b, 1);
    put_u16(b, p->pf->header_len);
    put(b, p->pf->header, p->pf->header_len);
    put_u8(b, count);
    for (uint32_t i = 0; i < count; i++) {
        put_u16(b, p->vlen[i]);
        put(b, vs[i], p->vlen[i]);
    }
}

static void bump(uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    v = fv_gf_add(v, 1);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_valid_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    if (fv_crypto_init() != 0)
        return 1;
    fuzz_valid_spec_t f;
    fuzz_valid_spec_init(&f);
    fv_valid_layout_t l;
    fv_diag_t d = {""};
    ok(fv_valid_layout_init(&f.spec, FUZZ_VALID_N, FUZZ_VALID_T, &l, &d), &d, "layout");

    const int64_t honest[FUZZ_VALID_DIM] = {1, -1, 9, 4, 5};
    const int64_t lying[FUZZ_VALID_DIM] = {-2, 0, 9, 4, 6}; /* bins sum to 10 */
    ok(fv_valid_spec_eval(&f.spec, honest, &d), &d, "honest statement");
    proved_t h, fl;
    memset(&h, 0, sizeof h);
    memset(&fl, 0, sizeof fl);
    prove_all(&f, honest, 1, &h);
    prove_all(&f, lying, 2, &fl);

    buf_t b = {NULL, 0, 0};
    char name[64];
    for (uint32_t x = 1; x <= FUZZ_VALID_N; x++) {
        holder_seed(&b, x, &h, x, 0);
        snprintf(name, sizeof name, "holder-x%u", x);
        write_seed(dir, name, &b);
    }
    holder_seed(&b, 1, &fl, 1, 0);
    write_seed(dir, "holder-false", &b);
    write_seed(dir, "bad-empty", &b);
    holder_seed(&b, 1, &h, 1, 0);
    b.len = 40;
    write_seed(dir, "bad-truncated", &b);
    holder_seed(&b, 0, &h, 1, 0);
    write_seed(dir, "holder-x0", &b);
    holder_seed(&b, FUZZ_VALID_N + 1, &h, 1, 0);
    write_seed(dir, "holder-x4", &b);
    holder_seed(&b, 1, &h, 2, 0);
    write_seed(dir, "holder-swapped", &b);
    holder_seed(&b, 1, &h, 1, FV_VALID_ELEM_BYTES);
    write_seed(dir, "holder-short", &b);

    for (uint32_t k = FUZZ_VALID_N; k >= 1; k--) {
        decide_seed(&b, &h, k, (const uint8_t *const *)h.vs);
        snprintf(name, sizeof name, "decide-%u", k);
        write_seed(dir, name, &b);
    }
    decide_seed(&b, &fl, FUZZ_VALID_N, (const uint8_t *const *)fl.vs);
    write_seed(dir, "decide-false", &b);
    uint8_t *v2 = malloc(h.vlen[1]);
    if (v2 == NULL)
        return 1;
    memcpy(v2, h.vs[1], h.vlen[1]);
    bump(v2 + 40);
    const uint8_t *vs_out[FUZZ_VALID_N] = {h.vs[0], v2, h.vs[2]};
    decide_seed(&b, &h, FUZZ_VALID_N, vs_out);
    write_seed(dir, "decide-outlier", &b);
    free(v2);

    uint8_t *ag[FUZZ_VALID_N];
    size_t aglen[FUZZ_VALID_N];
    for (uint32_t x = 1; x <= FUZZ_VALID_N; x++) {
        const fv_valid_held_t *held[2] = {h.held[x - 1], fl.held[x - 1]};
        ok(fv_valid_aggshare(&l, f.sum_id, held, 2, &ag[x - 1], &aglen[x - 1], &d), &d, "aggshare");
    }
    for (uint32_t k = FUZZ_VALID_N; k >= FUZZ_VALID_T; k--) {
        put_u8(&b, 2);
        put_u8(&b, k);
        for (uint32_t i = 0; i < k; i++) {
            put_u16(&b, aglen[i]);
            put(&b, ag[i], aglen[i]);
        }
        snprintf(name, sizeof name, "aggregate-%u", k);
        write_seed(dir, name, &b);
    }
    bump(ag[2] + 44);
    put_u8(&b, 2);
    put_u8(&b, FUZZ_VALID_N);
    for (uint32_t i = 0; i < FUZZ_VALID_N; i++) {
        put_u16(&b, aglen[i]);
        put(&b, ag[i], aglen[i]);
    }
    write_seed(dir, "aggregate-outlier", &b);
    for (uint32_t x = 0; x < FUZZ_VALID_N; x++)
        free(ag[x]);

    for (proved_t *p = &h; p; p = p == &h ? &fl : NULL) {
        fv_valid_proof_free(p->pf);
        for (uint32_t x = 0; x < FUZZ_VALID_N; x++) {
            fv_valid_held_free(p->held[x]);
            free(p->vs[x]);
        }
    }
    free(b.p);
    return 0;
}
