/* evil.c - the TEST-ONLY malicious agent: the two hooks of protocols/fv_evil.h, linked only
 * into tests/integration/evil's `fv-evil-agent` (the agent and the protocol library
 * compiled again with -DFV_EVIL_AGENT). The installed fedvault-agent never contains this
 * file nor any call to it (tests/integration/poison.py checks its symbols).
 *
 * The attack is chosen once per process by FV_EVIL_ATTACK; FV_EVIL_ROUNDS (optional:
 * "2", "1,3-5") limits the rounds attacked. Every attack aims at one check of the round's
 * statement (fv_valid_spec_t; for a federated round, protocols/fv_fed_valid.h):
 *   none          the honest agent.
 *   over_norm     every norm-block coordinate at +-ceil(4B/sqrt(d)) (its sign kept): the
 *                 norm is 4x the bound B = sqrt(norm_sq). Expected: "norm" (or
 *                 "wraparound" if a projection left its range first).
 *   plus_clip     every coordinate at +ceil(2B/sqrt(d)): each one small, the norm 2x B.
 *   just_over     every coordinate at the smallest c with d c^2 > norm_sq: the norm over
 *                 the bound by about sqrt(d)/B (0.1 % for a logreg).
 *   big_word      2^31 added to every norm-block word (a field element far outside the
 *                 bits the norm's slack and projections allow): "wraparound" or "norm".
 *   count_range   the first histogram bin set to 2^17: with the bins as non-negative
 *                 words of bounded total (fv_fed_valid.h) "nonneg"; with ranges (the
 *                 first "hist_pos..." one, else the first single-word range) its name.
 *   neg_bin       the first non-negative word (a bin) at -1, the next one up by as much
 *                 (the sums kept): "nonneg".
 *   hist_sum      the first equality's first word + 1 (a histogram bin: the bins no
 *                 longer sum to n_val): that equality's name.
 *   swap          input honest; the payloads sent are those of a proof of another input
 *                 (3x the honest one, else its update negated) under the honest header:
 *                 the holders find the payloads are not the committed ones
 *                 ("complaints"; "consistency" or "gadget" if some accepted them). Its own
 *                 check of its own payload fails too, so the agent's vagg client aborts the
 *                 round and goes silent (the coordinator waits out the phase deadline).
 *   replay        input honest; from its second attacked round on, the header and
 *                 payloads of the previous round's proof under this round's signature:
 *                 the holders refuse a proof for another round's context ("complaints";
 *                 silent after it, as swap).
 *   shuffle_hist  a lie within the rules: every positive histogram bin swapped with its
 *                 negative twin (read off the "hist_sum..." equalities; sums kept), and the update
 * replaced by the honest one negated and scaled to norm 2^FV_FED_VALID_NORM_BITS (the bound B). The
 *                 statement stays true: the agent proves it honestly, the proof passes.
 * Each attack writes one JSON line to stderr (event "evil": attack, round, what (input or
 * proof), detail, check: the check it aims at, "" for none), so the test can tell what was
 * done.
 *
 * Ownership: the hooks borrow spec and w/pf; what is kept across rounds (the honest input
 * for swap, the last proof for replay) is owned here, wiped when replaced.
 * Threading: the agent may call the hooks from its loop or a pool thread; one mutex
 * guards the state. Configuration is read once before main (a constructor) so a bad
 * FV_EVIL_ATTACK fails the agent at start, not in its first round.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "evil-int.h"
#include "fv_evil.h"
#include "fv_fed_valid.h"
#include "fv_valid.h"

typedef enum {
    A_NONE,
    A_OVER_NORM,
    A_PLUS_CLIP,
    A_JUST_OVER,
    A_BIG_WORD,
    A_COUNT_RANGE,
    A_NEG_BIN,
    A_HIST_SUM,
    A_SWAP,
    A_REPLAY,
    A_SHUFFLE_HIST,
    N_ATTACKS
} attack_t;

static const char *const attack_names[N_ATTACKS] = {
    "none",    "over_norm", "plus_clip", "just_over", "big_word",    "count_range",
    "neg_bin", "hist_sum",  "swap",      "replay",    "shuffle_hist"};

#define MAX_ROUND_SPANS 32

static struct {
    pthread_mutex_t mu;
    attack_t attack;
    uint32_t n_spans; /* 0: every round */
    uint64_t lo[MAX_ROUND_SPANS], hi[MAX_ROUND_SPANS];
    char target[FV_VALID_NAME_MAX];
    int64_t *honest; /* swap: this round's honest input (dim words) */
    uint32_t honest_dim;
    uint64_t honest_round;
    fv_valid_proof_t *prev; /* replay: the last round's proof as proved */
    uint64_t prev_round;
} E = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* One JSON line on stderr in a single write (the agent's log lines share the stream). */
static void say(uint64_t round, const char *what, const char *detail)
{
    char line[384];
    int n = snprintf(line, sizeof line,
                     "{\"level\":\"warn\",\"event\":\"evil\",\"attack\":\"%s\",\"round\":%llu,"
                     "\"what\":\"%s\",\"detail\":\"%s\",\"check\":\"%s\"}\n",
                     attack_names[E.attack], (unsigned long long)round, what, detail, E.target);
    if (n > 0 && (size_t)n < sizeof line) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n);
        (void)w; /* a lost test log line is not worth failing the round over */
    }
}

static void forget(void)
{
    if (E.honest)
        sodium_memzero(E.honest, (size_t)E.honest_dim * sizeof(*E.honest));
    free(E.honest);
    E.honest = NULL;
    E.honest_dim = 0;
    fv_valid_proof_free(E.prev);
    E.prev = NULL;
    E.target[0] = '\0';
}

static int parse_rounds(const char *s)
{
    E.n_spans = 0;
    if (s == NULL)
        return 0;
    while (*s) {
        char *end;
        unsigned long long lo = strtoull(s, &end, 10), hi = lo;
        if (end == s)
            return -1;
        if (*end == '-') {
            s = end + 1;
            hi = strtoull(s, &end, 10);
            if (end == s || hi < lo)
                return -1;
        }
        if (E.n_spans == MAX_ROUND_SPANS)
            return -1;
        E.lo[E.n_spans] = lo;
        E.hi[E.n_spans] = hi;
        E.n_spans++;
        if (*end == ',')
            end++;
        else if (*end != '\0')
            return -1;
        s = end;
    }
    return 0;
}

int fv__evil_configure(const char *attack, const char *rounds)
{
    pthread_mutex_lock(&E.mu);
    forget();
    int rc = -1;
    attack_t a = N_ATTACKS;
    for (int i = 0; i < N_ATTACKS; i++)
        if (strcmp(attack ? attack : "none", attack_names[i]) == 0)
            a = (attack_t)i;
    if (a == N_ATTACKS)
        fprintf(stderr,
                "fv-evil-agent: FV_EVIL_ATTACK=%s is not an attack (none, over_norm, "
                "plus_clip, just_over, big_word, count_range, neg_bin, hist_sum, swap, "
                "replay, "
                "shuffle_hist)\n",
                attack);
    else if (parse_rounds(rounds) != 0)
        fprintf(stderr,
                "fv-evil-agent: FV_EVIL_ROUNDS=%s: expected rounds and ranges such as "
                "\"2\" or \"1,3-5\"\n",
                rounds);
    else {
        E.attack = a;
        rc = 0;
    }
    pthread_mutex_unlock(&E.mu);
    return rc;
}

const char *fv__evil_target(void)
{
    return E.target;
}

__attribute__((constructor)) static void evil_init(void)
{
    if (fv__evil_configure(getenv("FV_EVIL_ATTACK"), getenv("FV_EVIL_ROUNDS")) != 0)
        _exit(2);
}

static bool attacked(uint64_t round)
{
    if (E.n_spans == 0)
        return true;
    for (uint32_t i = 0; i < E.n_spans; i++)
        if (round >= E.lo[i] && round <= E.hi[i])
            return true;
    return false;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The word a single-term count range checks (e = w[index], coefficient 1, constant 0). */
static bool count_word(const fv_valid_affine_t *a, uint32_t *ret)
{
    if (a->n_terms != 1 || a->terms[0].coef != 1 || a->constant != 0)
        return false;
    *ret = a->terms[0].index;
    return true;
}

static void set_norm_block(const fv_valid_spec_t *spec, int64_t *w, int64_t c, bool keep_sign)
{
    for (uint32_t j = 0; j < spec->norm_len; j++) {
        int64_t *z = &w[spec->norm_off + j];
        *z = keep_sign && *z < 0 ? -c : c;
    }
}

/* Smallest c >= 0 with d c^2 > norm_sq. */
static int64_t just_over(const fv_valid_spec_t *spec)
{
    uint64_t d = spec->norm_len, c = (uint64_t)sqrt((double)spec->norm_sq / (double)d);
    while (c > 0 && d * c * c > spec->norm_sq)
        c--;
    while (d * c * c <= spec->norm_sq)
        c++;
    return (int64_t)c;
}

static bool count_range(const fv_valid_spec_t *spec, int64_t *w)
{
    if (spec->n_nonneg > 0) { /* the bins are non-negative words, their total bounded */
        w[spec->nonneg[0]] = (int64_t)1 << FV_FED_VALID_COUNT_BITS;
        snprintf(E.target, sizeof E.target, "nonneg");
        return true;
    }
    const fv_valid_affine_t *pick = NULL;
    uint32_t idx = 0;
    for (uint32_t i = 0; i < spec->n_ranges && !pick; i++)
        if (starts_with(spec->ranges[i].name, "hist_pos") && count_word(&spec->ranges[i], &idx))
            pick = &spec->ranges[i];
    for (uint32_t i = 0; i < spec->n_ranges && !pick; i++)
        if (count_word(&spec->ranges[i], &idx))
            pick = &spec->ranges[i];
    if (!pick)
        return false;
    w[idx] = (int64_t)1 << pick->bits;
    snprintf(E.target, sizeof E.target, "%s", pick->name);
    return true;
}

/* The first non-negative word at -1, the second one up by as much: sums kept. */
static bool neg_bin(const fv_valid_spec_t *spec, int64_t *w)
{
    if (spec->n_nonneg < 2)
        return false;
    int64_t move = w[spec->nonneg[0]] + 1;
    w[spec->nonneg[0]] -= move;
    w[spec->nonneg[1]] += move;
    snprintf(E.target, sizeof E.target, "nonneg");
    return true;
}

static bool hist_sum(const fv_valid_spec_t *spec, int64_t *w)
{
    if (spec->n_equal == 0 || spec->equal[0].n_terms == 0)
        return false;
    w[spec->equal[0].terms[0].index] += 1;
    snprintf(E.target, sizeof E.target, "%s", spec->equal[0].name);
    return true;
}

/* Positive and negative bins swapped, the update negated and scaled to the bound. The
 * bins are read off the equalities "hist_sum..." (terms: the model's B positive bins, its
 * B negative bins, n_val). Returns the number of bins swapped. */
static uint32_t shuffle_hist(const fv_valid_spec_t *spec, int64_t *w)
{
    uint32_t swapped = 0;
    for (uint32_t i = 0; i < spec->n_equal; i++) {
        const fv_valid_affine_t *e = &spec->equal[i];
        if (!starts_with(e->name, "hist_sum") || e->n_terms < 3 || e->n_terms % 2 == 0)
            continue;
        uint32_t B = (e->n_terms - 1) / 2;
        for (uint32_t k = 0; k < B; k++) {
            int64_t *p = &w[e->terms[k].index], *n = &w[e->terms[B + k].index], t = *p;
            *p = *n;
            *n = t;
            swapped++;
        }
    }
    double sq = 0;
    for (uint32_t j = 0; j < spec->norm_len; j++)
        sq += (double)w[spec->norm_off + j] * (double)w[spec->norm_off + j];
    /* the bound in z units: 2^14 for a federated round (fv_fed_valid.h), else B less the
     * rounding's sqrt(d)/2 */
    double bound = (double)(1u << FV_FED_VALID_NORM_BITS),
           room = sqrt((double)spec->norm_sq) - 0.5 * sqrt((double)spec->norm_len) - 1;
    if (bound > room)
        bound = room;
    if (sq > 0)
        for (uint32_t j = 0; j < spec->norm_len; j++)
            w[spec->norm_off + j] =
                -(int64_t)llround((double)w[spec->norm_off + j] * bound / sqrt(sq));
    return swapped;
}

bool fv_evil_input(uint64_t round, const fv_valid_spec_t *spec, int64_t *w)
{
    pthread_mutex_lock(&E.mu);
    bool lie = false;
    E.target[0] = '\0';
    if (E.attack == A_SWAP) { /* the honest input, for the other proof */
        if (E.honest_dim != spec->dim) {
            if (E.honest)
                sodium_memzero(E.honest, (size_t)E.honest_dim * sizeof(*E.honest));
            free(E.honest);
            E.honest = malloc((size_t)spec->dim * sizeof(*E.honest));
            E.honest_dim = E.honest ? spec->dim : 0;
        }
        if (E.honest) {
            memcpy(E.honest, w, (size_t)spec->dim * sizeof(*w));
            E.honest_round = round;
        }
    }
    if (!attacked(round) || spec->dim == 0) {
        pthread_mutex_unlock(&E.mu);
        return false;
    }
    double B = sqrt((double)spec->norm_sq), sd = sqrt((double)spec->norm_len);
    switch (E.attack) {
    case A_OVER_NORM:
    case A_PLUS_CLIP:
    case A_JUST_OVER:
        if (spec->norm_len == 0)
            break;
        set_norm_block(spec, w,
                       E.attack == A_OVER_NORM   ? (int64_t)ceil(4 * B / sd)
                       : E.attack == A_PLUS_CLIP ? (int64_t)ceil(2 * B / sd)
                                                 : just_over(spec),
                       E.attack == A_OVER_NORM);
        snprintf(E.target, sizeof E.target, "norm");
        lie = true;
        break;
    case A_BIG_WORD:
        for (uint32_t j = 0; j < spec->norm_len; j++)
            w[spec->norm_off + j] += INT64_C(1) << 31;
        snprintf(E.target, sizeof E.target, "wraparound");
        lie = spec->norm_len > 0;
        break;
    case A_COUNT_RANGE:
        lie = count_range(spec, w);
        break;
    case A_NEG_BIN:
        lie = neg_bin(spec, w);
        break;
    case A_HIST_SUM:
        lie = hist_sum(spec, w);
        break;
    case A_SHUFFLE_HIST: {
        char n[24];
        snprintf(n, sizeof n, "%u bins", shuffle_hist(spec, w));
        say(round, "input", n);
        break;
    }
    default:
        break;
    }
    if (lie)
        say(round, "input", E.target);
    pthread_mutex_unlock(&E.mu);
    return lie;
}

static fv_valid_proof_t *proof_copy(const fv_valid_proof_t *pf)
{
    fv_valid_proof_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->header = malloc(pf->header_len);
    c->payloads = calloc(pf->n, sizeof(*c->payloads));
    if (!c->header || !c->payloads) {
        fv_valid_proof_free(c);
        return NULL;
    }
    c->header_len = pf->header_len;
    memcpy(c->header, pf->header, pf->header_len);
    c->payload_len = pf->payload_len;
    c->tries = pf->tries;
    for (uint32_t i = 0; i < pf->n; i++) {
        if (!(c->payloads[i] = malloc(pf->payload_len))) {
            fv_valid_proof_free(c);
            return NULL;
        }
        c->n = i + 1;
        memcpy(c->payloads[i], pf->payloads[i], pf->payload_len);
    }
    return c;
}

static bool same_shape(const fv_valid_proof_t *a, const fv_valid_proof_t *b)
{
    return a->n == b->n && a->header_len == b->header_len && a->payload_len == b->payload_len;
}

static void swap_payloads(uint64_t round, const fv_valid_spec_t *spec, fv_valid_proof_t *pf,
                          int (*prove_again)(void *, const int64_t *, fv_valid_proof_t **),
                          void *ud)
{
    if (!E.honest || E.honest_dim != spec->dim || E.honest_round != round || !prove_again) {
        say(round, "proof", "no honest input kept: nothing swapped");
        return;
    }
    int64_t *w2 = malloc((size_t)spec->dim * sizeof(*w2));
    if (!w2)
        return;
    for (uint32_t j = 0; j < spec->dim; j++)
        w2[j] = 3 * E.honest[j];
    fv_valid_proof_t *other = NULL;
    const char *what = "payloads of a proof of 3x the input";
    if (prove_again(ud, w2, &other) != 0) {
        /* prove_again refused 3x (a norm over the bound): the update negated is true too */
        memcpy(w2, E.honest, (size_t)spec->dim * sizeof(*w2));
        for (uint32_t j = 0; j < spec->norm_len; j++)
            w2[spec->norm_off + j] = -w2[spec->norm_off + j];
        other = NULL;
        what = "payloads of a proof of the update negated";
        if (prove_again(ud, w2, &other) != 0)
            other = NULL;
    }
    sodium_memzero(w2, (size_t)spec->dim * sizeof(*w2));
    free(w2);
    if (!other || !same_shape(other, pf)) {
        say(round, "proof", "prove_again failed: nothing swapped");
        fv_valid_proof_free(other);
        return;
    }
    uint8_t **t = pf->payloads;
    pf->payloads = other->payloads;
    other->payloads = t;
    fv_valid_proof_free(other);
    snprintf(E.target, sizeof E.target, "complaints");
    say(round, "proof", what);
}

static void replay(uint64_t round, fv_valid_proof_t *pf)
{
    if (attacked(round) && E.prev && E.prev_round < round && same_shape(E.prev, pf)) {
        /* send the kept proof; keep this round's for the next */
        fv_valid_proof_t t = *pf;
        pf->header = E.prev->header;
        pf->payloads = E.prev->payloads;
        pf->tries = E.prev->tries;
        E.prev->header = t.header;
        E.prev->payloads = t.payloads;
        E.prev->tries = t.tries;
        char what[64];
        snprintf(what, sizeof what, "header and payloads of round %llu",
                 (unsigned long long)E.prev_round);
        E.prev_round = round;
        snprintf(E.target, sizeof E.target, "complaints");
        say(round, "proof", what);
        return;
    }
    fv_valid_proof_free(E.prev);
    E.prev = proof_copy(pf);
    E.prev_round = round;
    if (attacked(round))
        say(round, "proof", E.prev ? "kept for the next round" : "out of memory: not kept");
}

void fv_evil_proof(uint64_t round, const fv_valid_spec_t *spec, fv_valid_proof_t *pf,
                   int (*prove_again)(void *ud, const int64_t *w, fv_valid_proof_t **ret), void *ud)
{
    pthread_mutex_lock(&E.mu);
    if (pf) {
        if (E.attack == A_SWAP && attacked(round))
            swap_payloads(round, spec, pf, prove_again, ud);
        else if (E.attack == A_REPLAY)
            replay(round, pf);
    }
    pthread_mutex_unlock(&E.mu);
}
