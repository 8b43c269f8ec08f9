/* coord_outq.c - each agent's outgoing FIFO, and the control messages put on it.
 *
 * Ordering: everything sent to one agent goes through that agent's FIFO (outq), and a
 * vector blocks the queue until fully handed to the socket, so an agent always receives
 * e.g. the model before the ROUND_START that names it. When a ROUND_START is handed to
 * the connection the round machine hears of it (coord__round_delivered): SecAgg's phase 0
 * deadline counts from then for that member, not from the round's start, since vector
 * sends are capped over all agents and the last member's models may take a while.
 *
 * A released model file (coord_release.c: FILE_CHUNKs after a FETCH) blocks the queue as
 * a vector does; its chunks are read from the file only while the connection holds less
 * than COORD_LOW_WATER, and on_drain (coord__on_drain) resumes it, so a transfer costs one
 * chunk of memory whatever the file's size.
 *
 * Memory: vectors being sent, over all agents, are capped (g_vec_sends_max, the daemon's
 * --max-uploads), so the send buffers do not grow with the number of agents; a queue that
 * waits for a send slot is resumed by oq_pump_all when one frees. Starts are paced: one
 * per turn of the loop (a start encodes a first frame), the rest on the next turns.
 *
 * Ownership: a queued message owns copies of the buffers it borrowed (oq_push_msg2: a
 * ROUND_START's keys and certificates, a JOB_OFFER's spec and CRL); a
 * queued vector either borrows a coordinator-owned vector that outlives the queue (the
 * global model, the teacher) or owns its copy. A connection that closes drops its queue
 * (coord__oq_clear).
 *
 * Threading: the loop thread only. The send-slot counters and the agent list they scan
 * are file-scope (one coordinator per process), set by coord__oq_init.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "coord-int.h"

/* ---- the queue ------------------------------------------------------------------- */

static void oq_pump(agent_t *a);
static void oq_pump_all(void);

static void item_free(outitem_t *it)
{
    if (it->fp != NULL)
        fclose(it->fp);
    free(it->owned);
    free(it->vec_owned);
    free(it);
}

/* Vectors (models, stats) being sent, over all agents: at most vec_sends_max at once, so
 * the coordinator's send buffers (each connection queues up to its low-water mark of
 * ciphertext) do not grow with the number of agents. One coordinator per process. */
static unsigned g_vec_sends, g_vec_sends_max = 2;
static struct agent **g_agents; /* &coord.agents, for oq_pump_all */

/* One vector send starts per turn of the loop: a start encodes its first frame (hashed
 * and encrypted: 1-3 ms for 256 KiB, more on a connection's first large frame, whose
 * buffers grow then), so starting every free slot at once made one callback pay for
 * several. g_started is cleared after each turn's I/O (g_turn, a check handle that does
 * not keep the loop alive); a start that must wait arms g_kick, which starts it on the
 * next turn, in a callback of its own. */
static coord_t *g_coord;
static uv_timer_t g_kick;
static uv_check_t g_turn;
static bool g_started, g_handles;

static void on_turn(uv_check_t *h)
{
    (void)h;
    g_started = false;
}

static void on_kick(uv_timer_t *t)
{
    (void)t;
    coord__loopstat_begin(g_coord, "outq.start");
    g_started = false;
    oq_pump_all();
    coord__loopstat_end(g_coord);
}

void coord__oq_init(coord_t *c, agent_t **agents, unsigned vec_sends_max)
{
    g_vec_sends_max = vec_sends_max;
    g_agents = agents;
    g_coord = c;
}

int coord__oq_start(uv_loop_t *loop)
{
    if (uv_timer_init(loop, &g_kick) != 0)
        return FV_EIO;
    if (uv_check_init(loop, &g_turn) != 0 || uv_check_start(&g_turn, on_turn) != 0) {
        uv_close((uv_handle_t *)&g_kick, NULL);
        return FV_EIO;
    }
    uv_unref((uv_handle_t *)&g_turn);
    g_handles = true;
    return 0;
}

void coord__oq_stop(void)
{
    if (!g_handles)
        return;
    g_handles = false;
    uv_timer_stop(&g_kick);
    uv_close((uv_handle_t *)&g_kick, NULL);
    uv_close((uv_handle_t *)&g_turn, NULL);
}

void coord__oq_close(void)
{
    g_agents = NULL;
}

/* Queues a copy of m. When m borrows buffers (field1/field2: the address of that pointer
 * member inside *m), their len bytes are copied (into one allocation) and the copy's
 * members are pointed at them, so the caller's buffers may go away at once. */
void coord__oq_push_msg2(agent_t *a, const fv_msg_t *m, const void *src1, size_t len1,
                         const void **field1, const void *src2, size_t len2, const void **field2)
{
    if (a->conn == NULL)
        return;
    outitem_t *it = calloc(1, sizeof *it);
    if (it == NULL)
        return;
    it->m = *m;
    if (len1 + len2 > 0) {
        it->owned = malloc(len1 + len2);
        if (it->owned == NULL) {
            free(it);
            return;
        }
        const void *src[2] = {src1, src2};
        const void **field[2] = {field1, field2};
        size_t len[2] = {len1, len2}, at = 0;
        for (int i = 0; i < 2; i++) {
            if (len[i] == 0)
                continue;
            uint8_t *copy = it->owned + at;
            memcpy(copy, src[i], len[i]);
            at += len[i];
            /* re-point the borrowed field at the copy: field is its offset in m */
            size_t off = (size_t)((const uint8_t *)field[i] - (const uint8_t *)m);
            memcpy((uint8_t *)&it->m + off, &copy, sizeof(void *));
        }
    }
    if (a->oq_tail != NULL)
        a->oq_tail->next = it;
    else
        a->oq_head = it;
    a->oq_tail = it;
    oq_pump(a);
}

void coord__oq_push_msg(agent_t *a, const fv_msg_t *m, const void *owned_src, size_t owned_len,
                        const void **field)
{
    coord__oq_push_msg2(a, m, owned_src, owned_len, field, NULL, 0, NULL);
}

void coord__oq_push_vec(agent_t *a, uint32_t id, fv_vec_dtype_t dtype, const void *vec, void *owned,
                        uint64_t n, const char *name)
{
    if (a->conn == NULL) {
        free(owned);
        return;
    }
    outitem_t *it = calloc(1, sizeof *it);
    if (it == NULL) {
        free(owned);
        return;
    }
    it->is_vec = true;
    it->vec_id = id;
    it->dtype = dtype;
    it->vec = owned != NULL ? owned : vec;
    it->vec_owned = owned;
    it->n_elems = n;
    snprintf(it->name, sizeof it->name, "%s", name);
    if (a->oq_tail != NULL)
        a->oq_tail->next = it;
    else
        a->oq_head = it;
    a->oq_tail = it;
    oq_pump(a);
}

void coord__oq_clear(agent_t *a)
{
    outitem_t *it = a->oq_head;
    if (a->vec_busy && it != NULL)
        it = it->next; /* the vector in flight is freed when the connection closes */
    while (it != NULL) {
        outitem_t *next = it->next;
        item_free(it);
        it = next;
    }
    if (a->vec_busy && a->oq_head != NULL)
        item_free(a->oq_head);
    a->oq_head = a->oq_tail = NULL;
    a->fetches = 0;
    if (a->vec_busy) {
        a->vec_busy = false;
        g_vec_sends--;
        oq_pump_all();
    }
}

static void oq_pump(agent_t *a)
{
    while (a->conn != NULL && !a->vec_busy && a->oq_head != NULL) {
        outitem_t *it = a->oq_head;
        if (it->is_file) {
            if (coord__release_pump(a, it) == 0)
                return; /* coord__on_drain resumes it */
            if (a->fetches > 0)
                a->fetches--;
        } else if (it->is_vec) {
            if (g_vec_sends >= g_vec_sends_max)
                return; /* oq_pump_all resumes it when a send slot frees */
            if (g_started && g_handles) {
                if (!uv_is_active((uv_handle_t *)&g_kick))
                    uv_timer_start(&g_kick, on_kick, 0, 0);
                return; /* one start per turn: the next turn starts it */
            }
            g_started = true;
            /* Busy before the call: a small vector is fully queued, and on_vec_sent run,
             * inside fv_conn_send_vec. */
            a->vec_busy = true;
            g_vec_sends++;
            int r =
                fv_conn_send_vec(a->conn, it->vec_id, it->dtype, it->vec, it->n_elems, it->name);
            if (r == 0)
                return; /* on_vec_sent pops it (maybe already did) */
            a->vec_busy = false;
            g_vec_sends--;
            coord_logj("warn", "send_failed",
                       json_pack("{s:s,s:s,s:s}", "agent", a->name, "what", it->name, "err",
                                 fv_err_name(r)));
        } else if (fv_conn_send(a->conn, &it->m) == 0 && it->m.type == FV_MSG_ROUND_START &&
                   g_coord != NULL) {
            /* behind the models it lacked: the member's phase 0 deadline starts now */
            coord__round_delivered(g_coord, a, it->m.u.round_start.round);
        }
        a->oq_head = it->next;
        if (a->oq_head == NULL)
            a->oq_tail = NULL;
        item_free(it);
    }
}

void coord__on_drain(fv_conn_t *conn)
{
    agent_t *a = fv_conn_get_data(conn);
    if (a != NULL && a->conn == conn)
        oq_pump(a);
}

static void oq_pump_all(void)
{
    static bool running;
    if (running || g_agents == NULL)
        return; /* the outer loop sees what nested sends changed */
    running = true;
    for (struct agent *a = *g_agents; a != NULL && g_vec_sends < g_vec_sends_max; a = a->next)
        oq_pump(a);
    running = false;
}

void coord__on_vec_sent(fv_conn_t *conn, uint32_t id)
{
    agent_t *a = fv_conn_get_data(conn);
    (void)id;
    if (a == NULL || !a->vec_busy || a->oq_head == NULL)
        return;
    outitem_t *it = a->oq_head;
    a->oq_head = it->next;
    if (a->oq_head == NULL)
        a->oq_tail = NULL;
    item_free(it);
    a->vec_busy = false;
    g_vec_sends--;
    oq_pump(a);
    oq_pump_all();
}

/* ---- messages to an agent -------------------------------------------------------- */

void coord__send_ctl(coord_t *c, agent_t *a, fv_msg_type_t type, int32_t status, const char *reason)
{
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = type;
    switch (type) {
    case FV_MSG_UPLOAD_GO:
        memcpy(m.u.upload_go.job, c->run.digest, 32);
        m.u.upload_go.round = c->rnd.round;
        coord__oq_push_msg(a, &m, NULL, 0, NULL);
        break;
    case FV_MSG_ROUND_END:
        memcpy(m.u.round_end.job, c->run.digest, 32);
        m.u.round_end.round = c->rnd.round;
        m.u.round_end.status = status;
        m.u.round_end.reason.ptr = reason;
        m.u.round_end.reason.len = strnlen(reason, FV_WIRE_TEXT_MAX);
        coord__oq_push_msg(a, &m, reason, m.u.round_end.reason.len + 1,
                           (const void **)&m.u.round_end.reason.ptr);
        break;
    case FV_MSG_JOB_DONE: /* of the job the agent took part in (a->done_*) */
        if (a->done_receipt != NULL) {
            /* the job's signed receipt first: an agent run --once exits at JOB_DONE */
            size_t len = strlen(a->done_receipt);
            m.type = FV_MSG_RECEIPT;
            memcpy(m.u.receipt.job, a->part_job, 32);
            m.u.receipt.round = a->done_receipt_round;
            m.u.receipt.body.ptr = a->done_receipt;
            m.u.receipt.body.len = len;
            memcpy(m.u.receipt.sig, a->done_sig, 64);
            coord__oq_push_msg(a, &m, a->done_receipt, len + 1,
                               (const void **)&m.u.receipt.body.ptr);
            memset(&m, 0, sizeof m);
            m.type = FV_MSG_JOB_DONE;
        }
        memcpy(m.u.job_done.job, a->part_job, 32);
        m.u.job_done.rounds = a->done_rounds;
        memcpy(m.u.job_done.model, a->done_model, 32);
        coord__oq_push_msg(a, &m, NULL, 0, NULL);
        a->done_sent = true;
        break;
    default:
        break;
    }
}

void coord__send_offer(coord_t *c, agent_t *a)
{
    if (coord__schema_collecting(c)) {
        coord__schema_query(c, a); /* the schema is fixed before any offer */
        return;
    }
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_JOB_OFFER;
    memcpy(m.u.job_offer.job, c->run.digest, 32);
    m.u.job_offer.spec = (const uint8_t *)c->run.spec;
    m.u.job_offer.spec_len = c->run.spec_len;
    m.u.job_offer.crl = c->crl_der; /* the federation CRL the agents verify (coord_main.c) */
    m.u.job_offer.crl_len = c->crl_der_len;
    coord__oq_push_msg2(a, &m, c->run.spec, c->run.spec_len, (const void **)&m.u.job_offer.spec,
                        c->crl_der, c->crl_der_len, (const void **)&m.u.job_offer.crl);
    coord__cohort_offered(c, a); /* waiting for its answer */
}

void coord__send_stats(coord_t *c, agent_t *a)
{
    if (coord__round_busy(c))
        return; /* the job machine is a worker's; the round's end sends the stats */
    const uint32_t *sum = c->model.jm != NULL ? fv_cjob_stats_sum(c->model.jm) : NULL;
    size_t words = c->model.jm != NULL ? fv_cjob_stats_layout(c->model.jm)->dim : 0;
    if (sum == NULL || a->has_stats)
        return;
    uint32_t *copy = malloc(words * 4);
    if (copy == NULL)
        return;
    memcpy(copy, sum, words * 4);
    coord__oq_push_vec(a, 0, FV_VEC_U32, NULL, copy, words, "stats");
    a->has_stats = true;
}
