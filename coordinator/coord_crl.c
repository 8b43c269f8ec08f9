/* coord_crl.c - revocation: the CRL reload and what it reaches.
 *
 * A reload (SIGHUP, the admin command crl.reload) swaps the TLS context's CRL (crypto/tls.c:
 * revoked certificates are refused at new handshakes), re-reads the CRL as DER for every
 * later JOB_OFFER (agents verify it against their CA and keep the newest: crypto/fv_trust.h)
 * and, before it is reported done, closes every live session, agent or admin, whose
 * certificate serial the new CRL lists: a revoked agent is a dropout of the round in flight
 * (coord__agent_close) and cannot come back. Each closure is logged and audited.
 *
 * Threading: the loop thread only.
 */
#include <stdlib.h>

#include <jansson.h>

#include "coord-int.h"
#include "fv_conn.h"
#include "fv_tls.h"
#include "fv_trust.h"
#include "fv_wire.h"

/* The CRL file as DER for JOB_OFFER (agents verify it against their CA and keep the
 * newest: crypto/fv_trust.h). On failure the DER in force stays. */
int coord__crl_der_load(coord_t *c, fv_diag_t *d)
{
    uint8_t *der = NULL;
    size_t len = 0;
    if (c->crl_file == NULL)
        return 0;
    int r = fv_trust_crl_file_der(c->crl_file, FV_WIRE_CRL_MAX, &der, &len, d);
    if (r != 0)
        return r;
    free(c->crl_der);
    c->crl_der = der;
    c->crl_der_len = len;
    return 0;
}

/* A reload refuses revoked certificates at new handshakes (crypto/tls.c); the sessions
 * they already hold are closed here, before the reload is reported done: a revoked agent
 * is a dropout of the round in flight (coord__agent_close) and cannot come back. */
int coord_reload_crl(coord_t *c, const char *by, fv_conn_t *keep, unsigned *ret_closed,
                     fv_diag_t *d)
{
    int r = fv_tls_ctx_reload_crl(c->net.ctx, d);
    if (r == 0)
        r = coord__crl_der_load(c, d);
    unsigned closed = 0;
    if (r == 0) {
        for (agent_t *a = c->agents; a != NULL; a = a->next) {
            if (a->conn == NULL || !fv_tls_ctx_revoked(c->net.ctx, a->serial))
                continue;
            coord_logj("warn", "session_revoked",
                       json_pack("{s:s,s:s,s:s,s:s,s:s}", "role", "agent", "agent", a->name,
                                 "serial", a->serial, "addr", a->addr, "by", by));
            coord_audit(
                c, by, "agent.session_revoked",
                json_pack("{s:s,s:s,s:s}", "agent", a->name, "serial", a->serial, "by", by));
            coord__agent_close(c, a, FV_EAUTH,
                               "the certificate was revoked (CRL reloaded): session closed");
            /* it cannot come back to hear of its job's end: --job does not wait for it */
            a->took_part = false;
            a->done_pending = false;
            closed++;
        }
        closed += coord__admin_close_revoked(c, by, keep);
    }
    coord_logj(r == 0 ? "info" : "error", r == 0 ? "crl_reloaded" : "crl_reload_failed",
               r == 0 ? json_pack("{s:I,s:I,s:s}", "revoked",
                                  (json_int_t)fv_tls_ctx_crl_count(c->net.ctx), "sessions_closed",
                                  (json_int_t)closed, "by", by)
                      : json_pack("{s:s,s:s}", "why", d->msg, "by", by));
    coord_audit(c, by, r == 0 ? "config.crl_reloaded" : "config.crl_reload_failed",
                r == 0 ? json_pack("{s:I,s:I}", "revoked",
                                   (json_int_t)fv_tls_ctx_crl_count(c->net.ctx), "sessions_closed",
                                   (json_int_t)closed)
                       : json_pack("{s:s}", "why", d->msg));
    if (ret_closed != NULL)
        *ret_closed = closed;
    return r;
}
