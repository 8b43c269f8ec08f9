/* secagg_sim.c - n SecAgg clients and the server in one process, deterministic.
 *
 * Everything comes from cfg->seed through one fv_rand_seeded_u64 stream, drawn in a
 * fixed order: identity key pairs (client 0..n-1), the dropout set (partial Fisher-Yates),
 * then per client a 32-byte seed for its protocol randomness and a 32-byte seed for its
 * input. So two runs with the same config emit the same bytes (tests check it).
 *
 * Routing is in delivery order (the server's outbox order; phase 0: client ids). A phase
 * runs in windows of consecutive deliveries: first the clients of the window do their
 * steps (handle the one message, fill their own outbox), then, on the caller's thread and
 * in delivery order, the simulator does everything shared: byte counters, msg_hook,
 * n_active, the server steps on each reply, the expected sum. A client step reads only
 * its own client, its own rand source, its message and its slot (outbox, input vector,
 * diagnostic); the server's state cannot influence it within a phase. So the windows may
 * run through cfg->par_for on other threads and every byte, counter, hook order and sum
 * is the same as one client at a time. Without par_for a window is one client: memory
 * O(dim) plus one masked message, as a one-by-one run. With par_for a window holds up to
 * SIM_BATCH_BYTES of inputs and masked vectors. When a client step fails, the later
 * clients of its window have done their step already (their counters show it); the first
 * failure in delivery order is returned, as in a sequential run.
 * A client chosen as a dropout for phase P does no work and sends nothing from phase P on
 * (the server still sends to it what it would send). The expected sum is accumulated
 * from the inputs of the clients the server accepted into U3.
 *
 * Threading: the simulator starts no thread. par_for (caller's) runs client_step; the
 * step hook of a client runs on the thread doing that step; server steps, msg_hook and
 * all the bookkeeping stay on the caller's thread, never concurrent with a client step.
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

/* Client work in flight at once when par_for is set: inputs plus masked vectors (two
 * vectors of dim words per client) stay below this. */
#define SIM_BATCH_BYTES ((size_t)256 << 20)

/* One client step of the current window: its inbound message (NULL: phase 0, start), its
 * outbox, its input vector (phase 2) and its result. Touched by one worker only. */
typedef struct slot {
    uint32_t u;
    const fv_secagg_outmsg_t *in;
    fv_secagg_outbox_t out;
    uint32_t *x; /* dim words, allocated on first use */
    int rc;
    fv_diag_t d;
} slot_t;

typedef struct sim {
    const fv_secagg_sim_config_t *cfg;
    uint32_t n, dim;
    fv_secagg_server_t *server;
    fv_secagg_client_t **clients;
    fv_rand_t *rngs;
    uint8_t *xseeds;     /* n x 32 */
    uint8_t *drop;       /* 1: dropout */
    uint64_t *up, *down; /* n x phases */
    uint32_t *expect;
    slot_t *slots;
    uint32_t n_slots; /* capacity: 1 without par_for */
    uint32_t phase;   /* of the window being run; read-only for the workers */
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

static void make_input(const sim_t *s, uint32_t u, uint32_t *x)
{
    fv_rand_t r;
    fv_rand_seeded(&r, s->xseeds + (size_t)u * 32);
    fv_rand_fill(&r, x, 4 * (size_t)s->dim);
    for (uint32_t i = 0; i < s->dim; i++)
        x[i] &= 0xffffu; /* < 2^16: n * 2^16 < 2^32 for every allowed n */
}

/* The parallel part: slot i's client handles its message. Touches only the slot, that
 * client (and its rand source), and the step hook for that client. */
static void client_step(void *arg, size_t i)
{
    sim_t *s = arg;
    slot_t *j = &s->slots[i];
    uint32_t u = j->u, p = s->phase;
    j->d.msg[0] = '\0';
    if (p == 2) {
        make_input(s, u, j->x);
        fv_secagg_client_set_input(s->clients[u], j->x);
    }
    hook(s, p, u, FV_SECAGG_HOOK_BEFORE);
    if (j->in == NULL)
        j->rc = fv_secagg_client_start(s->clients[u], &j->out, &j->d);
    else
        j->rc = fv_secagg_client_handle(s->clients[u], j->in->data, j->in->len, &j->out, &j->d);
    hook(s, p, u, FV_SECAGG_HOOK_AFTER);
}

static void run_slots(sim_t *s, uint32_t n)
{
    if (n == 0)
        return;
    if (s->cfg->par_for) {
        s->cfg->par_for(s->cfg->par_ctx, n, client_step, s);
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        client_step(s, i);
}

/* Client u's replies (phase p) to the server, in order. x: u's input in phase 2. */
static int route_up(sim_t *s, uint32_t u, uint32_t p, fv_secagg_outbox_t *out, const uint32_t *x,
                    fv_diag_t *d)
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
            fv_mod_add(s->dim, x, s->expect);
    }
    fv_secagg_outbox_clear(out);
    return 0;
}

/* Runs phase p: the deliveries are the server's messages in outbox order (phase 0: one
 * start per client, in id order). Windows of up to n_slots working clients: first their
 * steps (run_slots, maybe in parallel), then, on this thread and in delivery order,
 * exactly the bookkeeping and server steps a one-client-at-a-time run does. */
static int run_phase(sim_t *s, uint32_t p, const fv_secagg_outbox_t *sout, fv_diag_t *d)
{
    size_t n_del = p == 0 ? s->n : sout->n;
    size_t i = 0;
    s->phase = p;
    while (i < n_del) {
        size_t end = i;
        uint32_t n_work = 0;
        for (; end < n_del && n_work < s->n_slots; end++) {
            uint32_t u = p == 0 ? (uint32_t)end : sout->msgs[end].to;
            if (!active(s, u, p))
                continue;
            slot_t *j = &s->slots[n_work++];
            j->u = u;
            j->in = p == 0 ? NULL : &sout->msgs[end];
            j->rc = 0;
            if (p == 2 && j->x == NULL && (j->x = malloc(sizeof(uint32_t) * s->dim)) == NULL)
                return FV_ENOMEM;
        }
        run_slots(s, n_work);
        uint32_t w = 0;
        for (; i < end; i++) {
            uint32_t u = p == 0 ? (uint32_t)i : sout->msgs[i].to;
            if (p > 0) {
                const fv_secagg_outmsg_t *m = &sout->msgs[i];
                s->down[(size_t)u * FV_SECAGG_N_PHASES + p] += m->len;
                msg_hook(s, p, FV_SECAGG_SERVER, u, m->data, m->len);
            }
            if (!active(s, u, p))
                continue;
            slot_t *j = &s->slots[w++];
            s->res->n_active[p]++;
            if (j->rc < 0) {
                if (d)
                    memcpy(d, &j->d, sizeof(*d));
                return j->rc;
            }
            int rc = route_up(s, u, p, &j->out, j->x, d);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int run(sim_t *s, fv_diag_t *d)
{
    fv_secagg_outbox_t sout;
    fv_secagg_outbox_init(&sout);
    int rc = run_phase(s, 0, &sout, d);
    for (uint32_t p = 0; p < FV_SECAGG_N_PHASES && rc == 0; p++) {
        hook(s, p, FV_SECAGG_SERVER, FV_SECAGG_HOOK_BEFORE);
        rc = fv_secagg_server_close_phase(s->server, &sout, d);
        hook(s, p, FV_SECAGG_SERVER, FV_SECAGG_HOOK_AFTER);
        if (rc < 0 || p == 4)
            break;
        rc = run_phase(s, p + 1, &sout, d);
        fv_secagg_outbox_clear(&sout);
    }
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
    s.expect = calloc(s.dim, sizeof(uint32_t));
    s.n_slots = 1;
    if (cfg->par_for) {
        size_t cap = SIM_BATCH_BYTES / (8 * (size_t)s.dim);
        s.n_slots = cap < 1 ? 1 : cap > s.n ? s.n : (uint32_t)cap;
    }
    s.slots = calloc(s.n_slots, sizeof(*s.slots));
    uint32_t *perm = malloc(sizeof(uint32_t) * s.n);
    if (!id_pk || !id_sk || !s.clients || !s.rngs || !s.xseeds || !s.drop || !s.up || !s.down ||
        !s.expect || !s.slots || !perm)
        goto out;
    for (uint32_t i = 0; i < s.n_slots; i++)
        fv_secagg_outbox_init(&s.slots[i].out);

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
    if (cfg->par_for)
        fv_secagg_server_set_par_for(s.server, cfg->par_for, cfg->par_ctx);
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
        ret->clients.n_mac += st.n_mac;
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
    if (s.slots)
        for (uint32_t i = 0; i < s.n_slots; i++) {
            fv_secagg_outbox_close(&s.slots[i].out);
            free(s.slots[i].x);
        }
    free(s.slots);
    free(s.expect);
    free(perm);
    free(id_pk);
    fv_secret_free(id_sk);
    return rc;
}
