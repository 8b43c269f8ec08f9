/* secagg-int.h - pieces shared by secagg.c, secagg_wire.c and secagg_sim.c (folder-private).
 */
#ifndef FV_SECAGG_INT_H
#define FV_SECAGG_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fv_secagg.h"

#define FV__SECAGG_HEADER_BYTES 32
#define FV__SECAGG_VERSION 2
#define FV__SECAGG_KEY_ENTRY_BYTES (4 + 2 * FV_KX_PK_BYTES + FV_SIGN_BYTES) /* 132 */
#define FV__SECAGG_CT_ENTRY_BYTES (4 + FV_SECAGG_CT_BYTES)                  /* 108 */
#define FV__SECAGG_SIG_ENTRY_BYTES (4 + FV_SIGN_BYTES)                      /* 68 */
#define FV__SECAGG_SHARE_ENTRY_BYTES (4 + 1 + FV_SECAGG_SHARE_WIRE_BYTES)   /* 49 */

static inline void fv__put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void fv__put_u64(uint8_t *p, uint64_t v)
{
    fv__put_u32(p, (uint32_t)v);
    fv__put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t fv__get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t fv__get_u64(const uint8_t *p)
{
    return (uint64_t)fv__get_u32(p) | (uint64_t)fv__get_u32(p + 4) << 32;
}

/* Writes the 32-byte header. */
void fv__secagg_put_header(uint8_t *p, uint8_t type, uint64_t job, uint64_t round, uint32_t from,
                           uint32_t to, uint32_t count);

/* Uniform in [0, m), m >= 1, by rejection sampling of little-endian uint32 draws. */
uint32_t fv__secagg_rand_below(fv_rand_t *r, uint32_t m);

/* Appends a message (takes ownership of data; frees it on failure). */
int fv__secagg_outbox_push(fv_secagg_outbox_t *o, uint32_t to, uint8_t *data, size_t len);

/* The public neighbour graph (see fv_secagg.h). Classic graphs store nothing. */
typedef struct fv__secagg_graph {
    uint32_t n, k;
    bool classic;
    uint32_t *pos; /* ring position of each client (sparse only) */
    uint32_t *nb;  /* sparse: n*k, each row sorted; NULL for a client-side graph */
    uint32_t *perm;
} fv__secagg_graph_t;

/* Builds the graph; with_lists: store every sorted neighbour list (server). */
int fv__secagg_graph_init(fv__secagg_graph_t *g, const fv_secagg_params_t *p, bool with_lists);
void fv__secagg_graph_close(fv__secagg_graph_t *g);
bool fv__secagg_graph_adjacent(const fv__secagg_graph_t *g, uint32_t u, uint32_t v);
/* Sorted N(u) into out[k]. */
void fv__secagg_graph_neighbors(const fv__secagg_graph_t *g, uint32_t u, uint32_t *out);
/* Rank of v in the sorted holder set H(u) = N(u) + {u}, or -1 when v is not a holder. */
int64_t fv__secagg_graph_holder_rank(const fv__secagg_graph_t *g, uint32_t u, uint32_t v);

/* For tests: which of the client's secret buffers are all zero now. Bits: 1 mask seed b_u,
 * 2 s_sk, 4 c_sk, 8 share-encryption keys, 16 identity key copy, 32 own shares,
 * 64 received shares, 128 u3-MAC keys. */
unsigned fv__secagg_client_wiped(const fv_secagg_client_t *c);

#endif
