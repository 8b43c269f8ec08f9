/* fv_evil.h - hooks for the TEST-ONLY malicious agent (tests/integration/evil/).
 *
 * Compiled in only when FV_EVIL_AGENT is defined, which only the test tree's
 * `fv-evil-agent` build does (tests/integration/evil/meson.build compiles the agent and
 * the protocol library a second time with -DFV_EVIL_AGENT and links evil.c, which
 * implements these). The installed agent and coordinator never contain the calls: every
 * call site is inside #ifdef FV_EVIL_AGENT.
 */
#ifndef FV_EVIL_H
#define FV_EVIL_H
#ifdef FV_EVIL_AGENT

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_valid.h"

/* Before proving: may rewrite the agent's integer input w (spec->dim words) of this round.
 * Returns true when the statement may now be false (the agent then proves it with
 * fv_valid_prove_unchecked instead of refusing). */
bool fv_evil_input(uint64_t round, const fv_valid_spec_t *spec, int64_t *w);

/* After proving, before sealing: may rewrite the proof (header and payloads, e.g. swap
 * in the payloads of another proof, or the previous round's). prove_again(ud, w, &pf)
 * proves another input with the same ctx. */
void fv_evil_proof(uint64_t round, const fv_valid_spec_t *spec, fv_valid_proof_t *pf,
                   int (*prove_again)(void *ud, const int64_t *w, fv_valid_proof_t **ret),
                   void *ud);

#endif
#endif
