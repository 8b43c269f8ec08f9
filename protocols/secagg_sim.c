/* secagg_sim.c - n SecAgg clients and the server in one process, deterministic.
 *
 * Everything comes from cfg->seed through one fv_rand_seeded_u64 stream, drawn in a
 * fixed order: identity key pairs (client 0..n-1), the dropout set (partial Fisher-Yates),
 * then per client a 32-byte seed for its protocol randomness and a 32-byte seed for its
 * input. So two runs with the same config emit the same bytes (tests check it).
 *
 * Routing is sequential and in id order: the server's messages of a phase are delivered
 * one client at a time, each client's replies go to the server at once (so a masked
 * vector is added to the accumulator before the next client builds its own: memory stays
 * O(dim), plus one input vector). A client chosen as a dropout for phase P does no work
 * and sends nothing from phase P on (the server still sends to it what it would send).
 * The expected sum is accumulated from the inputs of the clients the server accepted
 * into U3.
 *
 * The step hook brackets exactly the protocol work of one party (handling one message,
 * or closing a phase), not the simulator's bookkeeping, so callers can time it.
 * Errors: a protocol abort (FV_ETHRESHOLD, FV_EPOLICY from a client...) is returned as
 * is; any other rejection of an honest message is a bug and is returned too, with the
 * party named in the diagnostic.
 */
#include "secagg-int.h"

#include <stdlib.h>

#include "fv_crypto.h"
#include "fv_fixed.h"

typedef struct sim {
    const fv_secagg_sim_config_t *cfg;
    uint32_t n, dim;
    fv_secagg_server_t *server;
    fv_secagg_client_t **clients;
    fv_rand_t *rngs;
    uint8_t *xseeds;     /* n x 32 */
    uint8_t *drop;       /* 1: dropout */
    uint64_t *up, *down; /* n x phases */
    uint32_t *x, *expect;
    fv_secagg_sim_result_t *res;
} sim_t;

static void hook(sim_t *s, uint32_t phase, uint32_t party, fv_secagg_hook_when_t when)
{
    if (s->cfg->step_hook)
        s->cfg->step_hook(s->cfg->hook_ud, phase, party, when);
}

static void msg_hook(sim_t *s, uint32_t phase, uint32_t from, uint32_t to, const uint8_t *m,
                     size_t len)
{
    if (s->cfg->msg_hook)
        s->cfg->msg_hook(s->cfg->hook_ud, phase, from, to, m, len);
}

static bool active(const sim_t *s, uint32_t u, uint32_t phase)
{
    return !s->drop[u] || phase < s->cfg->dropout_phase;
}

static void make_input(sim_t *s, uint32_t u)
{
    fv_rand_t r;
    fv_rand_seeded(&r, s->xseeds + (size_t)u * 32);
    fv_rand_fill(&r, s->x, 4 * (size_t)s->dim);
    for (uint32_t i = 0; i < s->dim; i++)
        s->x[i] &= 0xffffu; /* < 2^16: n * 2^16 < 2^32 for every allowed n */
}

/* Client u's replies (phase p) to the server, right away. */
static int route_up(sim_t *s, uint32_t u, uint32_t p, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    for (size_t i = 0; i < out->n; i++) {
        const fv_secagg_outmsg_t *m = &out->msgs[i];
        s->up[(size_t)u * FV_SECAGG_N_PHASES + p] += m->len;
        msg_hook(s, p, u, FV_SECAGG_SERVER, m->data, m->len);
        hook(s, p, FV_SECAGG_SERVER, FV_SECAGG_HOOK_BEFORE);
        int rc = fv_secagg_server_handle(s->server, m->data, m->len, d);
        hook(s, p, FV_SECAGG_SERVER, FV_SECAGG_HOOK_AFTER);
        if (rc < 0)
            return rc;
        if (p == 2 && fv_secagg_server_in_set(s->server, 3, u))
            fv_mod_add(s->dim, s->x, s->expect);
    }
    fv_secagg_outbox_clear(out);
    return 0;
}

static int run(sim_t *s, fv_diag_t *d)
{
    fv_secagg_outbox_t cout, sout;
    fv_secagg_outbox_init(&cout);
    fv_secagg_outbox_init(&sout);
    int rc = 0;
    for (uint32_t u = 0; u < s->n && rc == 0; u++) {
        if (!active(s, u, 0))
            continue;
        s->res->n_active[0]++;
        hook(s, 0, u, FV_SECAGG_HOOK_BEFORE);
        rc = fv_secagg_client_start(s->clients[u], &cout, d);
        hook(s, 0, u, FV_SECAGG_HOOK_AFTER);
        if (rc == 0)
            rc = route_up(s, u, 0, &cout, d);
    }
    for (uint32_t p = 0; p < FV_SECAGG_N_PHASES && rc == 0; p++) {
        hook(s, p, FV_SECAGG_SERVER, FV_SECAGG_HOOK_BEFORE);
        rc = fv_secagg_server_close_phase(s->server, &sout, d);
        hook(s, p, FV_SECAGG_SERVER, FV_SECAGG_HOOK_AFTER);
        if (rc < 0 || p == 4)
            break;
        uint32_t np = p + 1;
        for (size_t i = 0; i < sout.n && rc == 0; i++) {
            const fv_secagg_outmsg_t *m = &sout.msgs[i];
            uint32_t u = m->to;
            s->down[(size_t)u * FV_SECAGG_N_PHASES + np] += m->len;
            msg_hook(s, np, FV_SECAGG_SERVER, u, m->data, m->len);
            if (!active(s, u, np))
                continue;
            s->res->n_active[np]++;
            if (np == 2) {
                make_input(s, u);
                fv_secagg_client_set_input(s->clients[u], s->x);
            }
            hook(s, np, u, FV_SECAGG_HOOK_BEFORE);
            rc = fv_secagg_client_handle(s->clients[u], m->data, m->len, &cout, d);
            hook(s, np, u, FV_SECAGG_HOOK_AFTER);
            if (rc == 0)
                rc = route_up(s, u, np, &cout, d);
        }
        fv_secagg_outbox_clear(&sout);
    }
    fv_secagg_outbox_close(&cout);
    fv_secagg_outbox_close(&sout);
    return rc;
}

int fv_secagg_sim_run(const fv_secagg_sim_config_t *cfg, fv_secagg_sim_result_t *ret, fv_diag_t *d)
{
    sim_t s;
    memset(&s, 0, sizeof(s));
    memset(ret, 0, sizeof(*ret));
    s.cfg = cfg;
    s.res = ret;
    fv_secagg_params_t p = cfg->params;
    s.n = p.n_clients;
    s.dim = p.dim;
    if (s.n < 3 || s.n > FV_SECAGG_MAX_CLIENTS || s.dim < 1 || s.dim > FV_SECAGG_MAX_DIM ||
        !(cfg->dropout_fraction >= 0 && cfg->dropout_fraction < 1) || cfg->dropout_phase > 4)
        return fv_diag_set(d, FV_EINVAL,
                           "secagg sim: need 3 <= n <= %u, 1 <= dim, dropout fraction in [0,1), "
                           "phase 0..4",
                           FV_SECAGG_MAX_CLIENTS);
    int rc = fv_crypto_init();
    if (rc < 0)
        return rc;
    rc = FV_ENOMEM;
    uint8_t *id_pk = malloc((size_t)s.n * FV_SIGN_PK_BYTES);
    uint8_t *id_sk = fv_secret_alloc((size_t)s.n * FV_SIGN_SK_BYTES);
    s.clients = calloc(s.n, sizeof(*s.clients));
    s.rngs = calloc(s.n, sizeof(*s.rngs));
    s.xseeds = malloc((size_t)s.n * 32);
    s.drop = calloc(s.n, 1);
    s.up = calloc((size_t)s.n * FV_SECAGG_N_PHASES, sizeof(uint64_t));
    s.down = calloc((size_t)s.n * FV_SECAGG_N_PHASES, sizeof(uint64_t));
    s.x = malloc(sizeof(uint32_t) * s.dim);
    s.expect = calloc(s.dim, sizeof(uint32_t));
    uint32_t *perm = malloc(sizeof(uint32_t) * s.n);
    if (!id_pk || !id_sk || !s.clients || !s.rngs || !s.xseeds || !s.drop || !s.up || !s.down ||
        !s.x || !s.expect || !perm)
        goto out;

    fv_rand_t master;
    fv_rand_seeded_u64(&master, cfg->seed);
    for (uint32_t u = 0; u < s.n; u++)
        if ((rc = fv_sign_keypair(&master, id_pk + (size_t)u * 32, id_sk + (size_t)u * 64)) < 0)
            goto out;
    uint32_t n_drop = (uint32_t)(cfg->dropout_fraction * s.n);
    for (uint32_t i = 0; i < s.n; i++)
        perm[i] = i;
    for (uint32_t i = 0; i < n_drop; i++) {
        uint32_t j = i + fv__secagg_rand_below(&master, s.n - i);
        uint32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
        s.drop[perm[i]] = 1;
    }
    ret->n_dropped = n_drop;
    p.identity_pks = id_pk;
    if ((rc = fv_secagg_server_new(&p, &s.server, d)) < 0)
        goto out;
    for (uint32_t u = 0; u < s.n; u++) {
        uint8_t seed[32];
        fv_rand_fill(&master, seed, 32);
        fv_rand_seeded(&s.rngs[u], seed);
        fv_rand_fill(&master, s.xseeds + (size_t)u * 32, 32);
        fv_crypto_wipe(seed, sizeof(seed));
        rc = fv_secagg_client_new(&p, &cfg->policy, u, id_sk + (size_t)u * 64, &s.rngs[u],
                                  &s.clients[u], d);
        if (rc < 0)
            goto out;
    }

    rc = run(&s, d);

    for (int i = 1; i <= 5; i++)
        ret->set_size[i] = fv_secagg_server_set_size(s.server, i);
    for (uint32_t u = 0; u < s.n; u++) {
        fv_secagg_stats_t st;
        fv_secagg_client_stats(s.clients[u], &st);
        ret->clients.prg_words += st.prg_words;
        ret->clients.n_kx += st.n_kx;
        ret->clients.n_keygen += st.n_keygen;
        ret->clients.n_sign += st.n_sign;
        ret->clients.n_verify += st.n_verify;
        ret->clients.n_aead += st.n_aead;
        for (int ph = 0; ph < FV_SECAGG_N_PHASES; ph++) {
            uint64_t up = s.up[(size_t)u * FV_SECAGG_N_PHASES + ph];
            uint64_t dn = s.down[(size_t)u * FV_SECAGG_N_PHASES + ph];
            ret->bytes_up[ph] += up;
            ret->bytes_down[ph] += dn;
            if (up > ret->max_bytes_up[ph])
                ret->max_bytes_up[ph] = up;
            if (dn > ret->max_bytes_down[ph])
                ret->max_bytes_down[ph] = dn;
        }
    }
    fv_secagg_server_stats(s.server, &ret->server);
    if (rc == 0) {
        const uint32_t *sum;
        if ((rc = fv_secagg_server_result(s.server, &sum)) < 0)
            goto out;
        if ((ret->sum = malloc(sizeof(uint32_t) * s.dim)) == NULL) {
            rc = FV_ENOMEM;
            goto out;
        }
        memcpy(ret->sum, sum, sizeof(uint32_t) * s.dim);
        ret->exact = memcmp(ret->sum, s.expect, sizeof(uint32_t) * s.dim) == 0;
    }
out:
    if (s.clients)
        for (uint32_t u = 0; u < s.n; u++)
            fv_secagg_client_free(s.clients[u]);
    fv_secagg_server_free(s.server);
    if (s.rngs)
        fv_crypto_wipe(s.rngs, sizeof(*s.rngs) * s.n);
    free(s.clients);
    free(s.rngs);
    free(s.xseeds);
    free(s.drop);
    free(s.up);
    free(s.down);
    free(s.x);
    free(s.expect);
    free(perm);
    free(id_pk);
    fv_secret_free(id_sk);
    return rc;
}
