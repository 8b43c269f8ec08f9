/* evil-int.h - the test tree's malicious agent (evil.c): what its own unit check
 * (evil_check.c) needs beyond protocols/fv_evil.h. Never part of the installed daemons.
 */
#ifndef FV_EVIL_INT_H
#define FV_EVIL_INT_H

#include <stddef.h>
#include <stdint.h>

/* Chooses the attack (FV_EVIL_ATTACK's names: none, over_norm, plus_clip, just_over,
 * big_word, count_range, neg_bin, hist_sum, swap, replay, shuffle_hist) and the attacked rounds
 * (FV_EVIL_ROUNDS's syntax: "" or NULL for every round, else a comma-separated list of
 * rounds and ranges "1,3-5"); forgets what the last rounds kept (the honest input, the
 * proof to replay). The process reads both variables once at start. 0, or -1 naming the
 * bad value on stderr. */
int fv__evil_configure(const char *attack, const char *rounds);

/* The check the last attack expects to fail ("norm", a range's or an equality's name),
 * "" when none was aimed at a named check. Borrowed until the next hook call. */
const char *fv__evil_target(void);

#endif
