/* dpnoise.c - the randomness of differential privacy: keyed ChaCha20 streams, exact integer
 * samplers (Canonne, Kamath, Steinke 2020) and DP-SGD's floating-point Gaussian.
 *
 * The stream. Byte j of a stream is byte j of the ChaCha20 keystream (RFC 8439, libsodium
 * crypto_stream_chacha20_ietf_xor_ic) under the stream's key, block counter from 0, nonce
 * the 12 bytes domain (32-bit little-endian) || index (64-bit little-endian): distinct
 * (domain, index) pairs under one key never share keystream. Every sampler consumes whole
 * bytes from the front of that sequence, in call order; multi-byte integers are read
 * little-endian (host independent). So the numbers are a function of (key, domain, index,
 * the sequence of calls) and nothing else: the same on every machine and every run. The
 * stream buffers 4 blocks (256 bytes); a bulk read (fv_dp_gauss_add_f32, fv_dp_poisson's
 * chunks) drains the buffer
 * and then generates whole blocks straight into its own chunk at the next counter, which
 * yields the same bytes as the buffered path. The IETF counter is 32 bits: a stream ends
 * after 2^32 blocks (256 GiB); going past it is a programmer error (abort), as one DP-SGD
 * step uses about 4.1 bytes per parameter and one row's Poisson draw about 1 byte.
 *
 * Keys. fv_dp_key_derive = BLAKE2b-256 keyed by the parent, of label || n (8 bytes LE);
 * the suffix has a fixed length, so (label, n) -> message is injective. The hash state and
 * every keystream chunk on the stack are wiped with sodium_memzero; fv_dp_stream_wipe
 * zeroes the whole stream (key, position, buffered bytes).
 *
 * Exact samplers (CKS 2020): integers only, no floating point; a 128-bit division only for
 * floor(x) when x > 1 and for the Laplace's X / t_den, none in the bit loops.
 *  - fv_dp_below(n): draw ceil(bits(n-1)/8) bytes, mask to bits(n-1) bits, reject >= n
 *    (acceptance > 1/2).
 *  - fv_dp_bernoulli(num/den): compares a uniform U = 0.b1b2... (stream bits, lazily, the
 *    first byte's low bit first) with the binary expansion of p = num/den, produced by the
 *    remainder recurrence r <- 2r mod den (written r - (den - r) so nothing exceeds den <
 *    2^128); returns U < p at the first differing bit: P = p exactly, 2 bits expected, one
 *    byte per call almost always.
 *  - fv_dp_bernoulli_exp(x = num/den): CKS Algorithm 1. x <= 1: K = 1; while
 *    Bernoulli(x/K): K++; return K odd. The divisor den*K is used when it fits 128 bits,
 *    else Bernoulli(x) AND Bernoulli(1/K) (independent: the same probability). x > 1:
 *    floor(x) draws of Bernoulli(exp(-1)) (stop at the first 0), then
 *    Bernoulli(exp(-(x - floor x))).
 *  - fv_dp_dlaplace(t = t_num/t_den): CKS Algorithm 2 with its (s, t) = (t_den, t_num).
 *    X = U + t_num V < 2^128; an |output| above INT64_MAX is rejected (the return type):
 *    the law is the discrete Laplace conditioned on |x| <= 2^63 - 1 (a dropped mass below
 *    exp(-2^63 t_den / t_num), e.g. exp(-2^38) at t = 2^25).
 *  - fv_dp_dgauss(sigma2): CKS Algorithm 3 with t = isqrt(sigma2) + 1 (= floor(sigma) + 1,
 *    integer square root), Y ~ Lap_Z(t), accept with Bernoulli(exp(-(|Y| - sigma2/t)^2 /
 *    (2 sigma2))) = Bernoulli(exp(-u^2 / D)), u = ||Y| t - sigma2|, D = 2 sigma2 t^2.
 *    Why every product fits 128 bits for sigma2 in [1, 2^48]: sigma <= 2^24, t <= 2^24 + 1,
 *    t^2 < 2^49, D < 2 * 2^48 * 2^49 = 2^98; |Y| <= 2^63 - 1 (above) so |Y| t < 2^88 and
 *    u < 2^88. If u < 2^64, u^2 < 2^128 is the numerator. Else (|Y| >= 2^64 / t, a Laplace
 *    tail below exp(-2^64 / t^2) < exp(-2^15), but handled exactly) write u = m k + r with m =
 * 2^38: exp(-u^2/D) = exp(-u m/D)^k exp(-u r/D), numerators u m, u r < 2^126, each of the k factors
 * exp(-gamma) with gamma >= 2^64 2^38 / 2^98 = 16, so the loop stops at once
 *    (fv__dp_bernoulli_exp_sq, tested with small m). Inside the Laplace step everything is
 *    64-bit (t < 2^25). The output is N_Z(0, sigma2) conditioned on |x| <= 2^63 - 1, whose
 *    outside mass is below exp(-2^77): for any use, exactly N_Z.
 *  - fv_dp_poisson(q): keeps row i iff a 32-bit uniform U is below T = ceil(q 2^32) (q 2^32
 *    and its ceiling are exact in double; q >= 1 or T = 2^32 keeps all without drawing, q
 *    <= 0 or NaN none). P(keep) = T / 2^32 = fv_dp_rate_round(q) exactly: q rounded up to a
 *    multiple of 2^-32 (at most 2^-32 above q; the privacy plan uses the rounded rate, so
 *    the accountant counts what is sampled). U is drawn lazily, most significant byte
 *    first: the chunk holds one byte b0 per row; b0 below or above T's top byte decides;
 *    equal (probability 1/256), the row draws U's low 3 bytes from the stream after the
 *    chunk, in row order. The same law as comparing whole 32-bit words, ~1 byte per row.
 *
 * The float sampler (fv_dp_gauss_add_f32): the ziggurat of Marsaglia and Tsang (2000,
 * "The Ziggurat Method for Generating Random Variables"), 128 layers, tables zig_x, zig_f
 * below as exact double constants. Value i takes the i-th 32-bit word w (little-endian) of
 * a chunk read at once: layer l = w & 127, sign = bit 7, x = (w >> 8) 2^-24 zig_x[l] (a
 * 24-bit uniform on [0, zig_x[l])); x < zig_x[l+1] (the point lies under the next layer's
 * edge, ~98.8%) accepts at once. Otherwise zig_slow, reading more of the stream AFTER the
 * chunk (in value order): layer 0 -> Marsaglia's exact tail method beyond r = 3.4426 with
 * two 53-bit uniforms through log_u53; layer >= 1 -> the wedge test, a 53-bit uniform
 * height y in the layer accepted iff y < exp(-x^2/2) (exp_neg, fdlibm's exp); a rejection
 * takes a fresh 32-bit word (the low half of a 64-bit draw) and starts over. out[i] =
 * (float)(out[i] + std z), rounded once. exp_neg and log_u53 use only +, -, *, / and
 * exact scalings (tested against long-double expl, logl: < 2e-16 relative); sqrt is not
 * used. So the numbers are the same bits on every IEEE-754 host (crypto/meson.build turns
 * off FMA contraction), not tied to a libm version.
 * What it gives: a keyed, reproducible sample of N(0, std^2) up to the tables' double
 * rounding (the layers' areas equal to ~1e-16 relative) and the 24-bit grid of x inside a
 * layer (steps of zig_x[l] 2^-24 <= 2.2e-7, the resolution of a float near 2); the tail is
 * cut only by the 53-bit uniforms, at r + 53 ln 2 / r = 14.1 sigma (mass beyond: 1e-45).
 * Tested by Kolmogorov-Smirnov and a binned chi-square against
 * the normal CDF, tails beyond 3.5 sigma included. What it does NOT give: DP exactly as the
 * Gaussian mechanism's proof states it. Mironov 2012 ("On significance of the least
 * significant bits for differential privacy") showed that textbook floating-point Laplace
 * samplers leak through which doubles can occur (the set of reachable outputs depends on
 * the input, so low bits can reveal it) and broke them; the same argument applies to out +
 * noise rounded to float here. This is DP-SGD's noise as Opacus (torch.normal) and TF
 * Privacy (tf.random.normal) add it, with the same caveat: the accountant (model/rdp.c)
 * treats it as the ideal Gaussian. Where exactness matters (distributed mode, whose noise
 * several parties' sums rely on) the noise is the exact discrete Gaussian above, on
 * integers.
 *
 * Cost (tests/bench/bench_dpnoise.c, release build, thread CPU time, best of 9, on the
 * shared 2-vCPU development VM under load; ratio to libsodium's raw ChaCha20 keystream of
 * the same bytes in the same run): fv_dp_gauss_add_f32 7.7-9.3 ns per float (about 4.1
 * bytes), was 14.6-15.6 with Box-Muller (8 bytes, fdlibm log and sincos); fv_dp_dgauss
 * 232-264 ns per sample at sigma2 = 2^20 (18.7 bytes: ratio 23) and 235-264 ns at 2^40
 * (22.8 bytes: ratio 19-20), about half of it in fv_dp_bernoulli, whose branches on random
 * bits cannot be predicted; fv_dp_poisson 1.2-1.3 ns per row (about 1 byte), was 5.3-5.7
 * with a 64-bit uniform per row.
 *
 * Threading: a stream belongs to one thread at a time; all functions are pure given the
 * stream. Ownership: callers own streams and buffers; nothing is allocated.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto-int.h"
#include "fv_dpnoise.h"

typedef fv_dp_u128 u128;

#define BLOCK_BYTES 64u
#define BUF_BLOCKS (sizeof(((fv_dp_stream_t *)0)->buf) / BLOCK_BYTES)
#define MAX_BLOCKS (UINT64_C(1) << 32)
/* 32-bit words of keystream the float sampler reads at once (one per float). */
#define GAUSS_WORDS 1024u
/* Rows fv_dp_poisson decides per keystream read (one byte each). */
#define POISSON_ROWS 2048u

static void nonce_of(const fv_dp_stream_t *s, uint8_t n[crypto_stream_chacha20_ietf_NONCEBYTES])
{
    for (int i = 0; i < 4; i++)
        n[i] = (uint8_t)(s->domain >> (8 * i));
    for (int i = 0; i < 8; i++)
        n[4 + i] = (uint8_t)(s->index >> (8 * i));
}

/* nblocks keystream blocks at the stream's counter into out; advances the counter. */
static void gen_blocks(fv_dp_stream_t *s, uint8_t *out, uint64_t nblocks)
{
    uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];

    if (nblocks > MAX_BLOCKS - s->block)
        abort(); /* 256 GiB from one stream: see the note */
    nonce_of(s, nonce);
    memset(out, 0, nblocks * BLOCK_BYTES);
    crypto_stream_chacha20_ietf_xor_ic(out, out, nblocks * BLOCK_BYTES, nonce, (uint32_t)s->block,
                                       s->key);
    s->block += nblocks;
}

static void refill(fv_dp_stream_t *s)
{
    gen_blocks(s, s->buf, BUF_BLOCKS);
    s->pos = 0;
}

static inline uint8_t next_byte(fv_dp_stream_t *s)
{
    if (s->pos >= sizeof s->buf)
        refill(s);
    return s->buf[s->pos++];
}

/* The next len bytes of the stream. */
static void stream_read(fv_dp_stream_t *s, uint8_t *dst, size_t len)
{
    size_t have = sizeof s->buf - s->pos;

    if (have > len)
        have = len;
    memcpy(dst, s->buf + s->pos, have);
    s->pos += have;
    dst += have;
    len -= have;
    if (len >= BLOCK_BYTES) { /* the buffer is empty: whole blocks go straight to dst */
        size_t whole = len / BLOCK_BYTES;
        gen_blocks(s, dst, whole);
        dst += whole * BLOCK_BYTES;
        len -= whole * BLOCK_BYTES;
    }
    if (len > 0) {
        refill(s);
        memcpy(dst, s->buf, len);
        s->pos = len;
    }
}

static inline uint64_t le64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

void fv_dp_stream_init(fv_dp_stream_t *s, const uint8_t key[32], uint32_t domain, uint64_t index)
{
    memset(s, 0, sizeof *s);
    memcpy(s->key, key, 32);
    s->domain = domain;
    s->index = index;
    s->block = 0;
    s->pos = sizeof s->buf; /* empty */
}

void fv_dp_stream_wipe(fv_dp_stream_t *s)
{
    sodium_memzero(s, sizeof *s);
}

void fv_dp_key_derive(uint8_t out[32], const uint8_t parent[32], const char *label, uint64_t n)
{
    crypto_generichash_state st;
    uint8_t nb[8];

    for (int i = 0; i < 8; i++)
        nb[i] = (uint8_t)(n >> (8 * i));
    crypto_generichash_init(&st, parent, 32, 32);
    crypto_generichash_update(&st, (const unsigned char *)label, strlen(label));
    crypto_generichash_update(&st, nb, sizeof nb);
    crypto_generichash_final(&st, out, 32);
    sodium_memzero(&st, sizeof st);
}

uint64_t fv_dp_u64(fv_dp_stream_t *s)
{
    uint8_t b[8];

    for (int i = 0; i < 8; i++)
        b[i] = next_byte(s);
    return le64(b);
}

uint64_t fv_dp_below(fv_dp_stream_t *s, uint64_t n)
{
    assert(n >= 1);
    if (n <= 1)
        return 0;
    unsigned bits = 64u - (unsigned)__builtin_clzll(n - 1);
    unsigned nbytes = (bits + 7) / 8;
    uint64_t mask = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
    for (;;) {
        uint64_t v = 0;
        for (unsigned i = 0; i < nbytes; i++)
            v |= (uint64_t)next_byte(s) << (8 * i);
        v &= mask;
        if (v < n)
            return v;
    }
}

bool fv_dp_bernoulli(fv_dp_stream_t *s, u128 num, u128 den)
{
    assert(den >= 1);
    if (num == 0)
        return false;
    if (num >= den)
        return true;
    u128 r = num; /* p = r / den, the digits still to come */
    unsigned byte = 0, nbits = 0;
    for (;;) {
        bool pbit = r >= den - r; /* 2r >= den */
        r = pbit ? r - (den - r) : r + r;
        if (nbits == 0) {
            byte = next_byte(s);
            nbits = 8;
        }
        bool ubit = byte & 1u;
        byte >>= 1;
        nbits--;
        if (ubit != pbit)
            return pbit; /* U < p iff p has the 1 at the first difference */
    }
}

/* Bernoulli(num / (den k)), k >= 1. */
static bool bern_div(fv_dp_stream_t *s, u128 num, u128 den, uint64_t k)
{
    u128 dk;

    if (!__builtin_mul_overflow(den, (u128)k, &dk))
        return fv_dp_bernoulli(s, num, dk);
    return fv_dp_bernoulli(s, num, den) && fv_dp_bernoulli(s, 1, k);
}

/* Bernoulli(exp(-num/den)) for num <= den: CKS Algorithm 1. */
static bool bern_exp_le1(fv_dp_stream_t *s, u128 num, u128 den)
{
    uint64_t k = 1;

    if (num == 0)
        return true;
    while (bern_div(s, num, den, k))
        k++;
    return (k & 1u) != 0;
}

bool fv_dp_bernoulli_exp(fv_dp_stream_t *s, u128 num, u128 den)
{
    assert(den >= 1);
    if (num <= den)
        return bern_exp_le1(s, num, den);
    u128 whole = num / den;
    for (u128 i = 0; i < whole; i++)
        if (!bern_exp_le1(s, 1, 1))
            return false;
    return bern_exp_le1(s, num % den, den);
}

bool fv__dp_bernoulli_exp_sq(fv_dp_stream_t *s, u128 u, u128 den, u128 m)
{
    u128 k = u / m, r = u % m;

    for (u128 i = 0; i < k; i++)
        if (!fv_dp_bernoulli_exp(s, u * m, den))
            return false;
    return fv_dp_bernoulli_exp(s, u * r, den);
}

int64_t fv_dp_dlaplace(fv_dp_stream_t *s, uint64_t t_num, uint64_t t_den)
{
    assert(t_num >= 1 && t_den >= 1);
    for (;;) {
        uint64_t u = fv_dp_below(s, t_num);
        if (!fv_dp_bernoulli_exp(s, u, t_num))
            continue;
        uint64_t v = 0;
        while (bern_exp_le1(s, 1, 1))
            v++;
        u128 x = (u128)t_num * v;
        if (x > ~(u128)0 - u)
            continue; /* 2^64 draws of exp(-1) in a row: never, but not an overflow */
        x += u;
        u128 y = x / t_den;
        if (y > (u128)INT64_MAX)
            continue; /* outside the return type: see the note */
        bool neg = fv_dp_bernoulli(s, 1, 2);
        if (neg && y == 0)
            continue;
        return neg ? -(int64_t)y : (int64_t)y;
    }
}

static uint64_t isqrt64(uint64_t v)
{
    uint64_t r = 0;

    for (int b = 31; b >= 0; b--) {
        uint64_t c = r | (UINT64_C(1) << b);
        if (c * c <= v) /* c < 2^32: no overflow */
            r = c;
    }
    return r;
}

static int64_t dgauss_t(fv_dp_stream_t *s, uint64_t sigma2, uint64_t t)
{
    const u128 d = (u128)2 * sigma2 * t * t; /* < 2^98 */
    for (;;) {
        int64_t y = fv_dp_dlaplace(s, t, 1);
        u128 ay = (u128)(y < 0 ? -(uint64_t)y : (uint64_t)y);
        u128 yt = ay * t; /* < 2^88 */
        u128 u = yt >= sigma2 ? yt - sigma2 : (u128)sigma2 - yt;
        bool c = u >> 64 == 0 ? fv_dp_bernoulli_exp(s, u * u, d)
                              : fv__dp_bernoulli_exp_sq(s, u, d, (u128)1 << 38);
        if (c)
            return y;
    }
}

int64_t fv_dp_dgauss(fv_dp_stream_t *s, uint64_t sigma2)
{
    assert(sigma2 >= 1 && sigma2 <= FV_DP_SIGMA2_MAX);
    return dgauss_t(s, sigma2, isqrt64(sigma2) + 1);
}

void fv_dp_dgauss_add_u32(fv_dp_stream_t *s, uint64_t sigma2, uint32_t *acc, size_t n)
{
    assert(sigma2 >= 1 && sigma2 <= FV_DP_SIGMA2_MAX);
    uint64_t t = isqrt64(sigma2) + 1;
    for (size_t i = 0; i < n; i++)
        acc[i] += (uint32_t)(uint64_t)dgauss_t(s, sigma2, t);
}

/* ln((x + 1) 2^-53) for x < 2^53, the uniform in (0, 1] of Box-Muller's radius: fdlibm's
 * __ieee754_log (error below 1 ulp) with the exponent taken from the integer: x + 1 = 2^e m,
 * m in [sqrt(1/2), sqrt(2)), so the log is (e - 53) ln 2 + log(m), log(1 + f) = f - f^2/2
 * + s (f^2/2 + R(s^2)), s = f / (2 + f), ln 2 split in a high part (its low 32 bits zero,
 * so k ln2_hi is exact) and a low part. */
static inline double log_u53(uint64_t x)
{
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double sqrt2 = 1.41421356237309504880;
    uint64_t v = x + 1; /* in [1, 2^53]: exact in double */
    int e = 63 - __builtin_clzll(v);
    uint64_t scale_bits = (uint64_t)(1023 - e) << 52; /* 2^-e */
    double scale, m;
    memcpy(&scale, &scale_bits, sizeof scale);
    m = (double)v * scale; /* [1, 2), exact */
    if (m > sqrt2) {
        m *= 0.5;
        e++;
    }
    double k = (double)(e - 53), f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s;
    double w = z * z;
    double t1 = w * (3.999999999940941908e-01 +
                     w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
    double t2 = z * (6.666666666666735130e-01 +
                     w * (2.857142874366239149e-01 +
                          w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    double r = t2 + t1;
    return k * ln2_hi - ((hfsq - (s * (hfsq + r) + k * ln2_lo)) - f);
}

double fv__dp_log_u53(uint64_t x)
{
    return log_u53(x);
}

/* exp(x) for x <= 0 (the ziggurat's wedge test, x >= -r^2/2 = -5.93 there): fdlibm's
 * __ieee754_exp (error below 1 ulp): x = k ln2 + t, |t| <= ln2/2, k = round(x / ln2), ln 2
 * split high/low so k ln2_hi is exact, exp(t) = 1 + 2t / (2 - c) with c = t - t^2 R(t^2)
 * (a Remez polynomial), then scaled by 2^k through the exponent bits (x >= -708: k >= -1022,
 * a normal scale; below, 0). Only +, -, *, / in double: the same bits on every host. */
static double exp_neg(double x)
{
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double inv_ln2 = 1.44269504088896338700e+00;
    if (x < -708.0)
        return 0.0;
    int k = (int)(inv_ln2 * x - 0.5); /* round half away from zero, x <= 0 */
    double hi = x - k * ln2_hi, lo = k * ln2_lo, t = hi - lo, tt = t * t;
    double c =
        t -
        tt * (1.66666666666666019037e-01 +
              tt * (-2.77777777770155933842e-03 +
                    tt * (6.61375632143793436117e-05 +
                          tt * (-1.65339022054652515390e-06 + tt * 4.13813679705723846039e-08))));
    double y = 1.0 - ((lo - (t * c) / (2.0 - c)) - hi);
    uint64_t scale_bits = (uint64_t)(1023 + k) << 52; /* 2^k, k >= -1022 here */
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return y * scale;
}

double fv__dp_exp_neg(double x)
{
    return exp_neg(x);
}

/* The ziggurat of f(x) = exp(-x^2 / 2) on x >= 0, 128 layers of equal area v (Marsaglia
 * and Tsang 2000): zig_x[1] = r = 3.44261985589665, zig_x[i+1] = sqrt(-2 ln(v / zig_x[i] +
 * f(zig_x[i]))), zig_x[128] = 0, and zig_x[0] = v / f(r) the base strip's width (its
 * rectangle plus the tail beyond r); zig_f[i] = f(zig_x[i]) (zig_f[0] = f(r), zig_f[128] =
 * 1). r and v solved in long double so that the top layer closes (v / zig_x[127] +
 * f(zig_x[127]) = 1 to 2e-19), then rounded to these doubles: the constants ARE the
 * sampler (no computation at run time, the same on every host). Layer i (>= 1) is the
 * rectangle [0, zig_x[i]) x [zig_f[i], zig_f[i+1]). */
static const double zig_x[129] = {
    0x1.db4668fe7d167p+1, 0x1.b8a7c476d1741p+1, 0x1.9c8e0c7c7f35ep+1,
    0x1.8aa73e440e862p+1, 0x1.7d45eb36e9ff4p+1, 0x1.7279dd4ac2679p+1,
    0x1.695c2be68d3e4p+1, 0x1.616dff7c8dab3p+1, 0x1.5a61edf7e73f4p+1,
    0x1.540520129e8c8p+1, 0x1.4e3456b0e1da8p+1, 0x1.48d61806d430cp+1,
    0x1.43d75b60bac8dp+1, 0x1.3f29848d395fep+1, 0x1.3ac11b8e1e839p+1,
    0x1.3694f3a3721bap+1, 0x1.329d9725e1358p+1, 0x1.2ed4df8097554p+1,
    0x1.2b35aa5ebcda5p+1, 0x1.27bba2b5d9b7dp+1, 0x1.246317a6b3231p+1,
    0x1.2128dd36bbd01p+1, 0x1.1e0a342cee675p+1, 0x1.1b04b731f48d4p+1,
    0x1.18164be0bf8c9p+1, 0x1.153d16d455057p+1, 0x1.1277720181096p+1,
    0x1.0fc3e4d95cda5p+1, 0x1.0d211dd288ac4p+1, 0x1.0a8ded0ec1159p+1,
    0x1.08093fe3e1aa9p+1, 0x1.05921d1c4b0b9p+1, 0x1.0327a1cc4a836p+1,
    0x1.00c8fea16f933p+1, 0x1.fceaeb2ca0ee2p+0, 0x1.f858aff317ac8p+0,
    0x1.f3da09745b605p+0, 0x1.ef6dcddc7807dp+0, 0x1.eb12e914817afp+0,
    0x1.e6c85a8495b0dp+0, 0x1.e28d331c61c36p+0, 0x1.de609397db2b3p+0,
    0x1.da41aaf794b3cp+0, 0x1.d62fb5257b279p+0, 0x1.d229f9bfe95c7p+0,
    0x1.ce2fcb05f3115p+0, 0x1.ca4084e08c207p+0, 0x1.c65b8c04d5d84p+0,
    0x1.c2804d2c6531dp+0, 0x1.beae3c60c7179p+0, 0x1.bae4d457e8092p+0,
    0x1.b72395df55593p+0, 0x1.b36a075492a98p+0, 0x1.afb7b428f83acp+0,
    0x1.ac0c2c6fbfe6p+0,  0x1.a8670475107fbp+0, 0x1.a4c7d45cfb2a5p+0,
    0x1.a12e37c97caap+0,  0x1.9d99cd86aeea8p+0, 0x1.9a0a373c6d3ccp+0,
    0x1.967f1924c0e62p+0, 0x1.92f819c67bdfdp+0, 0x1.8f74e1b375764p+0,
    0x1.8bf51b49e8281p+0, 0x1.8878727879e86p+0, 0x1.84fe948480027p+0,
    0x1.81872fd216669p+0, 0x1.7e11f3ada7506p+0, 0x1.7a9e9016840d7p+0,
    0x1.772cb58a3242ap+0, 0x1.73bc14d01277fp+0, 0x1.704c5ec504e8fp+0,
    0x1.6cdd4426b0a02p+0, 0x1.696e755e0eb23p+0, 0x1.65ffa248d7f43p+0,
    0x1.62907a016eacp+0,  0x1.5f20aaa4d7638p+0, 0x1.5bafe1164c044p+0,
    0x1.583dc8bfea848p+0, 0x1.54ca0b4ff476ap+0, 0x1.5154507206658p+0,
    0x1.4ddc3d839cb58p+0, 0x1.4a6175432745fp+0, 0x1.46e39778d4ba1p+0,
    0x1.4362409821672p+0, 0x1.3fdd0959138fbp+0, 0x1.3c538647e5b53p+0,
    0x1.38c54749af146p+0, 0x1.3531d71460289p+0, 0x1.3198ba9823477p+0,
    0x1.2df97057dd75fp+0, 0x1.2a536fae26375p+0, 0x1.26a627fb9231dp+0,
    0x1.22f0ffba96ce9p+0, 0x1.1f33537495bfap+0, 0x1.1b6c7492bde7ap+0,
    0x1.179ba80458345p+0, 0x1.13c024b2bbdffp+0, 0x1.0fd911b972d18p+0,
    0x1.0be58456f2afcp+0, 0x1.07e47d879726ep+0, 0x1.03d4e7390f21p+0,
    0x1.ff6b21ffe30ecp-1, 0x1.f70a5866ad189p-1, 0x1.ee848e954b85cp-1,
    0x1.e5d6909f34423p-1, 0x1.dcfccc51a748p-1,  0x1.d3f340dd86c6bp-1,
    0x1.cab56ac6833a5p-1, 0x1.c13e2b012d149p-1, 0x1.b787a7c4f44a4p-1,
    0x1.ad8b25067d385p-1, 0x1.a340d1bad0391p-1, 0x1.989f85c72c985p-1,
    0x1.8d9c6a9d0cf67p-1, 0x1.822a858ac5ecap-1, 0x1.763a1600c1764p-1,
    0x1.69b7b213c3f64p-1, 0x1.5c8afdbecef6ep-1, 0x1.4e94c08bd4d78p-1,
    0x1.3fabee18d682fp-1, 0x1.2f98d6bb0e73ap-1, 0x1.1e0ce6b54ec53p-1,
    0x1.0a936da5942d2p-1, 0x1.e8e576e3830fap-2, 0x1.b4c8fecd63b02p-2,
    0x1.73949183add9dp-2, 0x1.16db47dfb32bdp-2, 0x0p+0,
};
static const double zig_f[129] = {
    0x1.5de9e33733182p-9, 0x1.5de9e33733182p-9, 0x1.6ba8b0ffc2db8p-8,
    0x1.1a9b6b3fcb829p-7, 0x1.83f4bed1a0f0bp-7, 0x1.f100847656bfp-7,
    0x1.309cee4e1477cp-6, 0x1.6a23fa9d6c22fp-6, 0x1.a4f57a25e8f32p-6,
    0x1.e0f951d58f849p-6, 0x1.0f0e539c938cp-5,  0x1.2e282b7255da2p-5,
    0x1.4dc3fcbda5a08p-5, 0x1.6ddc9dd20b8c5p-5, 0x1.8e6db483cac0fp-5,
    0x1.af738c17b4ea1p-5, 0x1.d0eaf633a6b8ap-5, 0x1.f2d13368cf93fp-5,
    0x1.0a91f0918dae5p-4, 0x1.1bf075c21538ap-4, 0x1.2d834113457cbp-4,
    0x1.3f49878976d3p-4,  0x1.514297b246583p-4, 0x1.636dd69e998c6p-4,
    0x1.75cabd60f402ap-4, 0x1.8858d6f55ed84p-4, 0x1.9b17be7e73957p-4,
    0x1.ae071dc7bf93dp-4, 0x1.c126ac0128a82p-4, 0x1.d4762ca995a18p-4,
    0x1.e7f56ea118c48p-4, 0x1.fba44b5c61816p-4, 0x1.07c1531a357f8p-3,
    0x1.11c835e726135p-3, 0x1.1be6c8cbe5a43p-3, 0x1.261d0aaaf7624p-3,
    0x1.306afe619efedp-3, 0x1.3ad0aa9de455dp-3, 0x1.454e19baadb54p-3,
    0x1.4fe359a145659p-3, 0x1.5a907bafba9e3p-3, 0x1.655594a3a505p-3,
    0x1.7032bc88e51fap-3, 0x1.7b280eac0c6f7p-3, 0x1.8635a99025d7bp-3,
    0x1.915baee7a2dddp-3, 0x1.9c9a43903cae2p-3, 0x1.a7f18f91a0d6ap-3,
    0x1.b361be1ec9a67p-3, 0x1.beeafd99e93b6p-3, 0x1.ca8d7f9ad4b43p-3,
    0x1.d64978f7e2d92p-3, 0x1.e21f21d136fa3p-3, 0x1.ee0eb59e75db3p-3,
    0x1.fa18733ee75d5p-3, 0x1.031e4e8606256p-2, 0x1.093dbc775a1f7p-2,
    0x1.0f6aa83b52201p-2, 0x1.15a5387a71a06p-2, 0x1.1bed95cc633cbp-2,
    0x1.2243eac7ee4p-2,   0x1.28a864146d917p-2, 0x1.2f1b307cdcc47p-2,
    0x1.359c810492f8ep-2, 0x1.3c2c88fdc65e7p-2, 0x1.42cb7e21f69bfp-2,
    0x1.497998ac6017ap-2, 0x1.503713769e39cp-2, 0x1.57042c17a74d2p-2,
    0x1.5de1230551a9bp-2, 0x1.64ce3bb89770ep-2, 0x1.6bcbbcd4d4694p-2,
    0x1.72d9f052408ddp-2, 0x1.79f923abf1d11p-2, 0x1.8129a811b882ep-2,
    0x1.886bd29e33e65p-2, 0x1.8fbffc918800bp-2, 0x1.972683912ac18p-2,
    0x1.9e9fc9ed4d931p-2, 0x1.a62c36ec797eap-2, 0x1.adcc371e07b84p-2,
    0x1.b5803cb437071p-2, 0x1.bd48bfe6b8a9p-2,  0x1.c5263f5ead9fcp-2,
    0x1.cd1940ad30932p-2, 0x1.d52250cdb191ep-2, 0x1.dd4204b59916bp-2,
    0x1.e578f9f2e03a3p-2, 0x1.edc7d75b8e9bep-2, 0x1.f62f4dd05d60fp-2,
    0x1.feb019151c56ep-2, 0x1.03a58060f304ap-1, 0x1.08006ca85ac6ap-1,
    0x1.0c6942a5c900fp-1, 0x1.10e07b50236c1p-1, 0x1.1566980fc6949p-1,
    0x1.19fc2397562a2p-1, 0x1.1ea1b2d9fe534p-1, 0x1.2357e62437dc2p-1,
    0x1.281f6a5d33891p-1, 0x1.2cf8fa7868c02p-1, 0x1.31e5612075dadp-1,
    0x1.36e57aa6a89b9p-1, 0x1.3bfa3745495cdp-1, 0x1.41249dc6579c8p-1,
    0x1.4665cea512cc7p-1, 0x1.4bbf07c6d4684p-1, 0x1.5131a8eff8ed9p-1,
    0x1.56bf3924ad864p-1, 0x1.5c696d34a27fdp-1, 0x1.62322fc5a83b3p-1,
    0x1.681bab4ed2ff3p-1, 0x1.6e2856a01cb2ap-1, 0x1.745b04d03ea4p-1,
    0x1.7ab6f9c66e43bp-1, 0x1.81400521b52b5p-1, 0x1.87faa61a8cfap-1,
    0x1.8eec3c5bda1f6p-1, 0x1.961b4c1b19f3p-1,  0x1.9d8fdfaee4af6p-1,
    0x1.a55418112ba08p-1, 0x1.ad750b7275ddp-1,  0x1.b6042cf926211p-1,
    0x1.bf19b6813348bp-1, 0x1.c8d923fa0897bp-1, 0x1.d37a74ffe486ap-1,
    0x1.df6071937f4c9p-1, 0x1.ed5cf061144dep-1, 0x1p+0,
};

/* The ziggurat's rare paths for a 32-bit word w whose fast test failed: the tail (layer 0,
 * x >= r: Marsaglia's method, a = -ln(u1) / r, b = -ln(u2) until 2b >= a^2, x = r + a, u1
 * and u2 53-bit uniforms in (0, 1]), the wedge (layer i >= 1, x >= zig_x[i+1]: accept iff a
 * 53-bit uniform height in layer i lies below f(x)), or a rejection: a new 32-bit word from
 * the stream and the whole test again. Returns |z|; the sign is w's bit 7. */
static double zig_slow(fv_dp_stream_t *s, uint32_t w)
{
    for (;;) {
        unsigned layer = w & 127u;
        double x = (double)(w >> 8) * zig_x[layer] * 0x1p-24;
        if (x < zig_x[layer + 1])
            return x;
        if (layer == 0) {
            const double r = zig_x[1];
            for (;;) {
                double a = -log_u53(fv_dp_u64(s) >> 11) / r, b = -log_u53(fv_dp_u64(s) >> 11);
                if (b + b >= a * a)
                    return r + a;
            }
        }
        double u = (double)(fv_dp_u64(s) >> 11) * 0x1p-53; /* [0, 1) */
        double y = zig_f[layer] + u * (zig_f[layer + 1] - zig_f[layer]);
        if (y < exp_neg(-0.5 * x * x))
            return x;
        w = (uint32_t)fv_dp_u64(s);
    }
}

void fv_dp_gauss_add_f32(fv_dp_stream_t *s, double std, float *out, size_t n)
{
    uint8_t chunk[GAUSS_WORDS * 4];
    assert(std >= 0 && isfinite(std));
    if (std == 0 || n == 0)
        return;
    for (size_t i = 0; i < n;) {
        size_t m = n - i < GAUSS_WORDS ? n - i : GAUSS_WORDS;
        stream_read(s, chunk, m * 4);
        for (size_t j = 0; j < m; j++, i++) {
            const uint8_t *b = chunk + 4 * j;
            uint32_t w =
                (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            unsigned layer = w & 127u;
            double x = (double)(w >> 8) * zig_x[layer] * 0x1p-24;
            if (!(x < zig_x[layer + 1]))
                x = zig_slow(s, w); /* ~1.2%: draws more from the stream, after this chunk */
            /* z = -x when bit 7 is set, by the sign bit (no branch on a coin flip) */
            uint64_t xb;
            double z;
            memcpy(&xb, &x, sizeof xb);
            xb ^= (uint64_t)(w & 128u) << 56;
            memcpy(&z, &xb, sizeof z);
            out[i] = (float)((double)out[i] + std * z);
        }
    }
    sodium_memzero(chunk, sizeof chunk);
}

double fv_dp_rate_round(double q)
{
    if (!(q > 0.0))
        return 0.0;
    if (q >= 1.0)
        return 1.0;
    /* q 2^32 < 2^32 is exact (a power-of-two scaling), so is its ceiling */
    return ldexp(ceil(ldexp(q, 32)), -32);
}

size_t fv_dp_poisson(fv_dp_stream_t *s, double q, size_t n, size_t *idx)
{
    size_t k = 0;
    /* T = ceil(q 2^32): q 2^32 is exact (a power-of-two scaling), so is its ceiling */
    uint64_t thr = q > 0.0 && q < 1.0 ? (uint64_t)ceil(ldexp(q, 32)) : 0;

    if (q >= 1.0 || thr >= (UINT64_C(1) << 32)) {
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        return n;
    }
    if (!(q > 0.0))
        return 0;
    /* row i's 32-bit uniform U = b0 2^24 + rest: U < T decided by b0 alone unless b0 is
     * T's top byte (probability 1/256), then by rest, 3 more bytes drawn at once */
    const unsigned t_top = (unsigned)(thr >> 24);
    const uint32_t t_rest = (uint32_t)(thr & 0xffffffu);
    uint8_t chunk[POISSON_ROWS];
    for (size_t i = 0; i < n;) {
        size_t m = n - i < POISSON_ROWS ? n - i : POISSON_ROWS;
        stream_read(s, chunk, m);
        for (size_t j = 0; j < m; j++, i++) {
            idx[k] = i; /* written always, kept when below: no branch on the common path */
            if (chunk[j] != t_top) {
                k += chunk[j] < t_top;
            } else {
                uint32_t rest = next_byte(s);
                rest |= (uint32_t)next_byte(s) << 8;
                rest |= (uint32_t)next_byte(s) << 16;
                k += rest < t_rest;
            }
        }
    }
    sodium_memzero(chunk, sizeof chunk);
    return k;
}
