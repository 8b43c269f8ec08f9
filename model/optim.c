/* optim.c - SGD with momentum and Adam over one flat float32 parameter vector.
 *
 * A step is one fused pass over the parameters: the effective gradient
 *     g = grad + (mask ? wd : 0) * theta + mu * (theta - ref)     (fv_optim.h)
 * is formed in registers and consumed at once by the update, so the step streams
 * params, grad, mask, ref and the moment buffers exactly once.
 *
 * Adam's bias corrections are folded into two per-step scalars computed in double and
 * rounded to float once:
 *     alpha = lr / (1 - b1^t),  c2 = 1 / (1 - b2^t)
 *     theta -= (alpha * m) / (sqrt(v * c2) + eps)
 * which is the header's formula up to float rounding (the form PyTorch uses too); it
 * saves two divisions per element. Per element the operations are always the same, in the
 * same order, so a step is deterministic and does not depend on where the element falls.
 *
 * Vectorization. GCC 12 at -O2 (our debugoptimized default) does not vectorize loops of
 * unknown trip count, and never vectorizes sqrtf while -fmath-errno is on, so the loops
 * are written with intrinsics: SSE2 (baseline on x86-64, 4 floats), and for Adam, whose
 * sqrt and division make it compute-bound, an AVX2 body (8 floats) chosen at run time
 * with __builtin_cpu_supports. Leftover elements go through the SSE2 body and then a
 * scalar tail. All paths perform the identical operation sequence per element (add, mul,
 * sub, div and sqrt are correctly rounded at every width, and no FMA is ever formed: the
 * AVX2 function is compiled for "avx2" only, which does not enable FMA contraction), so
 * results are bit-identical whichever path an element takes and on whichever x86-64 CPU.
 * Other targets use the scalar loop.
 *
 * Ownership: the optimizer owns its moment buffers; cfg.prox_ref is borrowed and must
 * outlive the optimizer (or the caller's use of it). Not thread-safe: one per trainer,
 * except that fv_optim_step_part only reads the optimizer and writes the range it is given
 * (of params and the moments), so one step may be split over threads by disjoint ranges
 * (train_pool.c's RANGE tasks); it computes alpha and c2 from its t exactly as
 * fv_optim_step does, so a split step is bit-identical to a whole one.
 */
#include "fv_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define FV_OPTIM_SSE2 1
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FV_OPTIM_AVX2 1
#endif

struct fv_optim {
    fv_optim_cfg_t cfg;
    size_t n;
    uint64_t t; /* steps since new/reset */
    float *m;   /* SGD: velocity; Adam: first moment. Owned, n */
    float *v;   /* Adam: second moment; NULL for SGD. Owned, n */
};

void fv_optim_cfg_default(fv_optim_cfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = FV_OPT_ADAM;
    cfg->lr = 1e-3f;
    cfg->momentum = 0.9f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->weight_decay = 0.01f;
    cfg->prox_mu = 0.0f;
    cfg->prox_ref = NULL;
}

/* Every field is checked whatever the kind, so a typo in an unused field still shows. */
int fv_optim_cfg_check(const fv_optim_cfg_t *cfg, fv_diag_t *d)
{
    if (cfg == NULL)
        return fv_diag_set(d, FV_EINVAL, "optimizer: no configuration given");
    if (cfg->kind != FV_OPT_SGD && cfg->kind != FV_OPT_ADAM)
        return fv_diag_set(d, FV_EINVAL, "optimizer: kind = %d: must be sgd (0) or adam (1)",
                           (int)cfg->kind);
    if (!(isfinite(cfg->lr) && cfg->lr > 0.0f))
        return fv_diag_set(d, FV_EINVAL, "optimizer: lr = %g: must be finite and > 0",
                           (double)cfg->lr);
    if (!(cfg->momentum >= 0.0f && cfg->momentum < 1.0f))
        return fv_diag_set(d, FV_EINVAL, "optimizer: momentum = %g: must be in [0, 1)",
                           (double)cfg->momentum);
    if (!(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f))
        return fv_diag_set(d, FV_EINVAL, "optimizer: beta1 = %g: must be in [0, 1)",
                           (double)cfg->beta1);
    if (!(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f))
        return fv_diag_set(d, FV_EINVAL, "optimizer: beta2 = %g: must be in [0, 1)",
                           (double)cfg->beta2);
    if (!(isfinite(cfg->eps) && cfg->eps > 0.0f))
        return fv_diag_set(d, FV_EINVAL, "optimizer: eps = %g: must be finite and > 0",
                           (double)cfg->eps);
    if (!(isfinite(cfg->weight_decay) && cfg->weight_decay >= 0.0f))
        return fv_diag_set(d, FV_EINVAL, "optimizer: weight_decay = %g: must be finite and >= 0",
                           (double)cfg->weight_decay);
    if (!(isfinite(cfg->prox_mu) && cfg->prox_mu >= 0.0f))
        return fv_diag_set(d, FV_EINVAL, "optimizer: prox_mu = %g: must be finite and >= 0",
                           (double)cfg->prox_mu);
    return 0;
}

int fv_optim_new(const fv_optim_cfg_t *cfg, size_t n_params, fv_optim_t **ret)
{
    if (ret == NULL || n_params == 0 || fv_optim_cfg_check(cfg, NULL) != 0)
        return FV_EINVAL;
    fv_optim_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return FV_ENOMEM;
    o->cfg = *cfg;
    o->n = n_params;
    o->m = calloc(n_params, sizeof *o->m);
    if (cfg->kind == FV_OPT_ADAM)
        o->v = calloc(n_params, sizeof *o->v);
    if (o->m == NULL || (cfg->kind == FV_OPT_ADAM && o->v == NULL)) {
        fv_optim_free(o);
        return FV_ENOMEM;
    }
    *ret = o;
    return 0;
}

void fv_optim_free(fv_optim_t *o)
{
    if (o == NULL)
        return;
    free(o->m);
    free(o->v);
    free(o);
}

void fv_optim_reset(fv_optim_t *o)
{
    memset(o->m, 0, o->n * sizeof *o->m);
    if (o->v != NULL)
        memset(o->v, 0, o->n * sizeof *o->v);
    o->t = 0;
}

/* What one step needs, hoisted out of the loop. */
typedef struct step_ctx {
    const float *grad;
    const uint8_t *mask; /* NULL = decay everything */
    const float *ref;    /* NULL = no proximal term */
    float wd, mu;
    float lr, mom;                 /* SGD */
    float b1, omb1, b2, omb2, eps; /* Adam: omb = 1 - beta */
    float alpha, c2;               /* Adam: lr / (1 - b1^t), 1 / (1 - b2^t) */
} step_ctx_t;

/* Effective gradient of element i (scalar path). */
static inline float eff_grad(const step_ctx_t *c, const float *p, size_t i)
{
    float wd = c->mask == NULL || c->mask[i] ? c->wd : 0.0f;
    float g = c->grad[i] + wd * p[i];
    if (c->ref != NULL)
        g = g + c->mu * (p[i] - c->ref[i]);
    return g;
}

static inline void sgd_one(const step_ctx_t *c, float *p, float *v, size_t i)
{
    float g = eff_grad(c, p, i);
    float vi = c->mom * v[i] + g;
    v[i] = vi;
    p[i] = p[i] - c->lr * vi;
}

static inline void adam_one(const step_ctx_t *c, float *p, float *m, float *v, size_t i)
{
    float g = eff_grad(c, p, i);
    float mi = c->b1 * m[i] + c->omb1 * g;
    float vi = c->b2 * v[i] + c->omb2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] - (c->alpha * mi) / (sqrtf(vi * c->c2) + c->eps);
}

#ifdef FV_OPTIM_SSE2
/* Effective gradient of elements i..i+3, the same operations as eff_grad. */
static inline __m128 eff_grad4(const step_ctx_t *c, __m128 p, size_t i)
{
    __m128 wd = _mm_set1_ps(c->wd);
    if (c->mask != NULL) {
        int32_t mb;
        memcpy(&mb, c->mask + i, sizeof mb);
        __m128i z = _mm_setzero_si128();
        __m128i b = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(mb), z), z);
        /* lanes whose mask byte is 0 get wd = 0 */
        wd = _mm_andnot_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(b, z)), wd);
    }
    __m128 g = _mm_add_ps(_mm_loadu_ps(c->grad + i), _mm_mul_ps(wd, p));
    if (c->ref != NULL)
        g = _mm_add_ps(g, _mm_mul_ps(_mm_set1_ps(c->mu), _mm_sub_ps(p, _mm_loadu_ps(c->ref + i))));
    return g;
}
#endif

static void sgd_step(const step_ctx_t *c, float *p, float *v, size_t n)
{
    size_t i = 0;
#ifdef FV_OPTIM_SSE2
    __m128 mom = _mm_set1_ps(c->mom), lr = _mm_set1_ps(c->lr);
    for (; i + 4 <= n; i += 4) {
        __m128 pi = _mm_loadu_ps(p + i);
        __m128 g = eff_grad4(c, pi, i);
        __m128 vi = _mm_add_ps(_mm_mul_ps(mom, _mm_loadu_ps(v + i)), g);
        _mm_storeu_ps(v + i, vi);
        _mm_storeu_ps(p + i, _mm_sub_ps(pi, _mm_mul_ps(lr, vi)));
    }
#endif
    for (; i < n; i++)
        sgd_one(c, p, v, i);
}

#ifdef FV_OPTIM_AVX2
/* Adam over the first n - n % 8 elements, 8 at a time; same operations as adam_one.
 * Returns the number of elements done. */
__attribute__((target("avx2"))) static size_t adam_avx2(const step_ctx_t *c, float *p, float *m,
                                                        float *v, size_t n)
{
    const __m256 b1 = _mm256_set1_ps(c->b1), omb1 = _mm256_set1_ps(c->omb1);
    const __m256 b2 = _mm256_set1_ps(c->b2), omb2 = _mm256_set1_ps(c->omb2);
    const __m256 alpha = _mm256_set1_ps(c->alpha), c2 = _mm256_set1_ps(c->c2);
    const __m256 eps = _mm256_set1_ps(c->eps), wd_all = _mm256_set1_ps(c->wd);
    const __m256 mu = _mm256_set1_ps(c->mu);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 pi = _mm256_loadu_ps(p + i);
        __m256 wd = wd_all;
        if (c->mask != NULL) {
            int64_t mb;
            memcpy(&mb, c->mask + i, sizeof mb);
            __m256i b = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mb));
            __m256i zero = _mm256_cmpeq_epi32(b, _mm256_setzero_si256());
            wd = _mm256_andnot_ps(_mm256_castsi256_ps(zero), wd_all);
        }
        __m256 g = _mm256_add_ps(_mm256_loadu_ps(c->grad + i), _mm256_mul_ps(wd, pi));
        if (c->ref != NULL)
            g = _mm256_add_ps(g, _mm256_mul_ps(mu, _mm256_sub_ps(pi, _mm256_loadu_ps(c->ref + i))));
        __m256 mi =
            _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(omb1, g));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)),
                                  _mm256_mul_ps(omb2, _mm256_mul_ps(g, g)));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, c2)), eps);
        _mm256_storeu_ps(p + i, _mm256_sub_ps(pi, _mm256_div_ps(_mm256_mul_ps(alpha, mi), den)));
    }
    return i;
}
#endif

static void adam_step(const step_ctx_t *c, float *p, float *m, float *v, size_t n)
{
    size_t i = 0;
#ifdef FV_OPTIM_AVX2
    if (__builtin_cpu_supports("avx2"))
        i = adam_avx2(c, p, m, v, n);
#endif
#ifdef FV_OPTIM_SSE2
    __m128 b1 = _mm_set1_ps(c->b1), omb1 = _mm_set1_ps(c->omb1);
    __m128 b2 = _mm_set1_ps(c->b2), omb2 = _mm_set1_ps(c->omb2);
    __m128 alpha = _mm_set1_ps(c->alpha), c2 = _mm_set1_ps(c->c2), eps = _mm_set1_ps(c->eps);
    for (; i + 4 <= n; i += 4) {
        __m128 pi = _mm_loadu_ps(p + i);
        __m128 g = eff_grad4(c, pi, i);
        __m128 mi = _mm_add_ps(_mm_mul_ps(b1, _mm_loadu_ps(m + i)), _mm_mul_ps(omb1, g));
        __m128 vi =
            _mm_add_ps(_mm_mul_ps(b2, _mm_loadu_ps(v + i)), _mm_mul_ps(omb2, _mm_mul_ps(g, g)));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 den = _mm_add_ps(_mm_sqrt_ps(_mm_mul_ps(vi, c2)), eps);
        _mm_storeu_ps(p + i, _mm_sub_ps(pi, _mm_div_ps(_mm_mul_ps(alpha, mi), den)));
    }
#endif
    for (; i < n; i++)
        adam_one(c, p, m, v, i);
}

/* Elements [lo, hi) of step t; o is only read. */
static void step_range(const fv_optim_t *o, uint64_t t, float *params, const float *grad,
                       const uint8_t *decay_mask, size_t lo, size_t hi)
{
    const fv_optim_cfg_t *cfg = &o->cfg;
    step_ctx_t c;
    memset(&c, 0, sizeof c);
    /* The contexts' pointers are shifted so that element i of the range is index i - lo
     * everywhere: every path does the same operations per element wherever it falls. */
    c.grad = grad + lo;
    c.mask = decay_mask != NULL ? decay_mask + lo : NULL;
    c.ref = cfg->prox_ref != NULL ? cfg->prox_ref + lo : NULL;
    c.wd = cfg->weight_decay;
    c.mu = cfg->prox_mu;
    c.lr = cfg->lr;
    if (hi <= lo)
        return;
    if (cfg->kind == FV_OPT_SGD) {
        c.mom = cfg->momentum;
        sgd_step(&c, params + lo, o->m + lo, hi - lo);
        return;
    }
    c.b1 = cfg->beta1;
    c.omb1 = 1.0f - cfg->beta1;
    c.b2 = cfg->beta2;
    c.omb2 = 1.0f - cfg->beta2;
    c.eps = cfg->eps;
    c.alpha = (float)((double)cfg->lr / (1.0 - pow((double)cfg->beta1, (double)t)));
    c.c2 = (float)(1.0 / (1.0 - pow((double)cfg->beta2, (double)t)));
    adam_step(&c, params + lo, o->m + lo, o->v + lo, hi - lo);
}

void fv_optim_step(fv_optim_t *o, float *params, const float *grad, const uint8_t *decay_mask)
{
    o->t++;
    step_range(o, o->t, params, grad, decay_mask, 0, o->n);
}

void fv_optim_step_part(const fv_optim_t *o, uint64_t t, float *params, const float *grad,
                        const uint8_t *decay_mask, size_t lo, size_t hi)
{
    if (hi > o->n)
        hi = o->n;
    step_range(o, t, params, grad, decay_mask, lo, hi);
}
