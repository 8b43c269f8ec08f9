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
 * "The Ziggurat Method for Generating Random Variables"), 256 layers, tables zig_x, zig_f
 * below as exact double constants. Value i takes the i-th 32-bit word w (little-endian) of
 * a chunk read at once: layer l = w & 255, sign = bit 8, x = (w >> 9) 2^-23 zig_x[l] (a
 * 23-bit uniform on [0, zig_x[l])); x < zig_x[l+1] (the point lies under the next layer's
 * edge, ~99%) accepts at once. Otherwise zig_slow, reading more of the stream AFTER the
 * chunk (in value order): layer 0 -> Marsaglia's exact tail method beyond r = 3.6542 with
 * two 53-bit uniforms through log_u53; layer >= 1 -> the wedge test, a 53-bit uniform
 * height y in the layer accepted iff y < exp(-x^2/2) (exp_neg, fdlibm's exp); a rejection
 * takes a fresh 32-bit word (the low half of a 64-bit draw) and starts over. out[i] =
 * (float)(out[i] + std z), rounded once. exp_neg and log_u53 use only +, -, *, / and
 * exact scalings (tested against long-double expl, logl: < 2e-16 relative); sqrt is not
 * used. So the numbers are the same bits on every IEEE-754 host (crypto/meson.build turns
 * off FMA contraction), not tied to a libm version.
 * What it gives: a keyed, reproducible sample of N(0, std^2) up to the tables' double
 * rounding (the layers' areas equal to ~1e-16 relative) and the 24-bit grid of x inside a
 * layer (steps of zig_x[l] 2^-23 <= 4.6e-7, the resolution of a float near 4); the tail is
 * cut only by the 53-bit uniforms, at r + 53 ln 2 / r = 13.7 sigma (mass beyond: 1e-45).
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
 * shared 2-vCPU development VM under load, three runs; ratio to libsodium's raw ChaCha20
 * keystream of the same bytes in the same run): fv_dp_gauss_add_f32 4.6-4.9 ns per float
 * (4.18 bytes: ratio 2.1; Box-Muller with 8 bytes and fdlibm log and sincos took
 * 14.6-15.6); fv_dp_dgauss 232-264 ns per sample at sigma2 = 2^20 (18.7 bytes: ratio 23)
 * and 235-264 ns at 2^40 (22.8 bytes: ratio 19-20), about half of it in fv_dp_bernoulli,
 * whose branches on random bits cannot be predicted; fv_dp_poisson 1.05 ns per row (1.01
 * bytes: ratio 2.1; a 64-bit uniform per row took 5.3-5.7).
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

/* ln((x + 1) 2^-53) for x < 2^53, a uniform in (0, 1] of the ziggurat's tail: fdlibm's
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

/* The ziggurat of f(x) = exp(-x^2 / 2) on x >= 0, 256 layers of equal area v (Marsaglia
 * and Tsang 2000): zig_x[1] = r = 3.65415288536101, zig_x[i+1] = sqrt(-2 ln(v / zig_x[i] +
 * f(zig_x[i]))), zig_x[256] = 0, and zig_x[0] = v / f(r) the base strip's width (its
 * rectangle plus the tail beyond r); zig_f[i] = f(zig_x[i]) (zig_f[0] = f(r), zig_f[256] =
 * 1). r and v solved in long double so that the top layer closes (v / zig_x[255] +
 * f(zig_x[255]) = 1 to 2e-18), then rounded to these doubles: the constants ARE the
 * sampler (no computation at run time, the same on every host). Layer i (>= 1) is the
 * rectangle [0, zig_x[i]) x [zig_f[i], zig_f[i+1]). */
static const double zig_x[257] = {
    0x1.f493b7815d982p+1,
    0x1.d3bb48209ad33p+1,
    0x1.b981f3878fdbp+1,
    0x1.a8fdc78947759p+1,
    0x1.9cbee014057aap+1,
    0x1.92ee0946f4496p+1,
    0x1.8ab0fbfaa7c14p+1,
    0x1.839030529f233p+1,
    0x1.7d42df4d6ce8bp+1,
    0x1.7799556090672p+1,
    0x1.72728f05f7a33p+1,
    0x1.6db6b8d09e231p+1,
    0x1.69540be9fe5c2p+1,
    0x1.653ce7b006aeap+1,
    0x1.61669cf861e4bp+1,
    0x1.5dc8a243ad0fep+1,
    0x1.5a5c08b718dd9p+1,
    0x1.571b1a94ae41cp+1,
    0x1.54011523a7e43p+1,
    0x1.5109f53e9ac42p+1,
    0x1.4e3250dcd8903p+1,
    0x1.4b7739d6b5a28p+1,
    0x1.48d62759c43bdp+1,
    0x1.464ce44a73a16p+1,
    0x1.43d9815545e94p+1,
    0x1.417a49cb9e5dbp+1,
    0x1.3f2dbaa60f475p+1,
    0x1.3cf27b31704a6p+1,
    0x1.3ac7570ae88fap+1,
    0x1.38ab39256410ap+1,
    0x1.369d27a33a84p+1,
    0x1.349c405ae12a3p+1,
    0x1.32a7b5e68a4a3p+1,
    0x1.30becd256aeeep+1,
    0x1.2ee0db1a978f5p+1,
    0x1.2d0d43196db97p+1,
    0x1.2b437532a0a53p+1,
    0x1.2982ecd770e78p+1,
    0x1.27cb2faa8592ep+1,
    0x1.261bcc77658ep+1,
    0x1.24745a4ac9c24p+1,
    0x1.22d477a6fd3efp+1,
    0x1.213bc9d04cc82p+1,
    0x1.1fa9fc2e2d901p+1,
    0x1.1e1ebfbe4ae39p+1,
    0x1.1c99ca971a695p+1,
    0x1.1b1ad777f2f8fp+1,
    0x1.19a1a564eebadp+1,
    0x1.182df74d21262p+1,
    0x1.16bf93b9deef5p+1,
    0x1.1556448602e3dp+1,
    0x1.13f1d69c4096fp+1,
    0x1.129219bbb5d37p+1,
    0x1.1136e04207043p+1,
    0x1.0fdffefa69fb8p+1,
    0x1.0e8d4cf116594p+1,
    0x1.0d3ea34aa3d32p+1,
    0x1.0bf3dd1eed449p+1,
    0x1.0aacd7571c0c5p+1,
    0x1.0969708e8a255p+1,
    0x1.082988f632e18p+1,
    0x1.06ed023a72669p+1,
    0x1.05b3bf6adb37ep+1,
    0x1.047da4e3ef5c7p+1,
    0x1.034a983a902abp+1,
    0x1.021a8028fc947p+1,
    0x1.00ed447d3a075p+1,
    0x1.ff859c118f60bp+0,
    0x1.fd360d22fe785p+0,
    0x1.faebb187122bfp+0,
    0x1.f8a6604899782p+0,
    0x1.f665f20c90168p+0,
    0x1.f42a40fb74d6dp+0,
    0x1.f1f328ac25321p+0,
    0x1.efc086101eca9p+0,
    0x1.ed9237610a73ap+0,
    0x1.eb681c0f76f08p+0,
    0x1.e94214b2abf09p+0,
    0x1.e72002f97fe23p+0,
    0x1.e501c99c1d186p+0,
    0x1.e2e74c4ea46f3p+0,
    0x1.e0d06fb49d219p+0,
    0x1.debd195522e34p+0,
    0x1.dcad2f8fc490cp+0,
    0x1.daa0999206e6ep+0,
    0x1.d8973f4d7fba4p+0,
    0x1.d691096e7f123p+0,
    0x1.d48de1533c647p+0,
    0x1.d28db1037ef2p+0,
    0x1.d0906328b8f6ep+0,
    0x1.ce95e3068e037p+0,
    0x1.cc9e1c73bd69p+0,
    0x1.caa8fbd36a2abp+0,
    0x1.c8b66e0eba617p+0,
    0x1.c6c6608ec8705p+0,
    0x1.c4d8c136e0d1dp+0,
    0x1.c2ed7e5f07a2dp+0,
    0x1.c10486cec16ap+0,
    0x1.bf1dc9b81ae82p+0,
    0x1.bd3936b2ec0a2p+0,
    0x1.bb56bdb85256ep+0,
    0x1.b9764f1e5f73dp+0,
    0x1.b797db93f8928p+0,
    0x1.b5bb541ce3d04p+0,
    0x1.b3e0aa0e00c01p+0,
    0x1.b207cf09a985cp+0,
    0x1.b030b4fc3a11bp+0,
    0x1.ae5b4e18bb338p+0,
    0x1.ac878cd5af5cfp+0,
    0x1.aab563e9ff10ap+0,
    0x1.a8e4c64a0313fp+0,
    0x1.a715a724aa9a7p+0,
    0x1.a547f9e0bbb8bp+0,
    0x1.a37bb21a2c85ep+0,
    0x1.a1b0c39f93696p+0,
    0x1.9fe7226fad24dp+0,
    0x1.9e1ec2b6f7414p+0,
    0x1.9c5798cd5d92ep+0,
    0x1.9a919933f99c1p+0,
    0x1.98ccb892e2a33p+0,
    0x1.9708ebb70d5efp+0,
    0x1.954627903a28bp+0,
    0x1.9384612ef0afep+0,
    0x1.91c38dc288349p+0,
    0x1.9003a2973b591p+0,
    0x1.8e44951446a28p+0,
    0x1.8c865aba10c9dp+0,
    0x1.8ac8e9205c044p+0,
    0x1.890c35f47f72ep+0,
    0x1.875036f7a7ec7p+0,
    0x1.8594e1fd1f5bep+0,
    0x1.83da2ce899f16p+0,
    0x1.82200dac88677p+0,
    0x1.80667a486ea1fp+0,
    0x1.7ead68c73dee7p+0,
    0x1.7cf4cf3db22fcp+0,
    0x1.7b3ca3c8b140ap+0,
    0x1.7984dc8babd94p+0,
    0x1.77cd6faeff44ap+0,
    0x1.7616535e5732p+0,
    0x1.745f7dc70eeddp+0,
    0x1.72a8e516914c7p+0,
    0x1.70f27f78b68ecp+0,
    0x1.6f3c43161f856p+0,
    0x1.6d8626128d354p+0,
    0x1.6bd01e8b343bdp+0,
    0x1.6a1a22950b2b3p+0,
    0x1.6864283b13139p+0,
    0x1.66ae257c99674p+0,
    0x1.64f8104b7260dp+0,
    0x1.6341de8a2b0a4p+0,
    0x1.618b860a31fc5p+0,
    0x1.5fd4fc89f5e39p+0,
    0x1.5e1e37b2f8cd4p+0,
    0x1.5c672d17d733fp+0,
    0x1.5aafd23241b5ap+0,
    0x1.58f81c60e8515p+0,
    0x1.574000e555f79p+0,
    0x1.558774e1bb2c9p+0,
    0x1.53ce6d56a665p+0,
    0x1.5214df20a8b5cp+0,
    0x1.505abef5e5563p+0,
    0x1.4ea001638a606p+0,
    0x1.4ce49acb311ddp+0,
    0x1.4b287f602415ep+0,
    0x1.496ba32488f3p+0,
    0x1.47adf9e66c338p+0,
    0x1.45ef773cac75ep+0,
    0x1.44300e83c30a6p+0,
    0x1.426fb2da6745fp+0,
    0x1.40ae571e09e76p+0,
    0x1.3eebede725a85p+0,
    0x1.3d28698561de3p+0,
    0x1.3b63bbfb83d06p+0,
    0x1.399dd6fb2b267p+0,
    0x1.37d6abe05586cp+0,
    0x1.360e2baca52d7p+0,
    0x1.3444470265ea4p+0,
    0x1.3278ee1f4b933p+0,
    0x1.30ac10d6e48dap+0,
    0x1.2edd9e8cba99p+0,
    0x1.2d0d862e1b855p+0,
    0x1.2b3bb62b82edbp+0,
    0x1.29681c719d71dp+0,
    0x1.2792a661dd381p+0,
    0x1.25bb40ca96bfep+0,
    0x1.23e1d7de9c322p+0,
    0x1.2206572c4c6ecp+0,
    0x1.2028a9940a0a3p+0,
    0x1.1e48b93e0d431p+0,
    0x1.1c666f8f82acfp+0,
    0x1.1a81b51ee6d8bp+0,
    0x1.189a71a78da37p+0,
    0x1.16b08bfc4202p+0,
    0x1.14c3e9f8e9143p+0,
    0x1.12d4707310fc1p+0,
    0x1.10e20329515f1p+0,
    0x1.0eec84b16086fp+0,
    0x1.0cf3d664bcc83p+0,
    0x1.0af7d84bc6116p+0,
    0x1.08f869071f40fp+0,
    0x1.06f565b72a014p+0,
    0x1.04eea9e16a5ffp+0,
    0x1.02e40f5398f9dp+0,
    0x1.00d56e04234eep+0,
    0x1.fd8537dfa2eb1p-1,
    0x1.f956d9e87d7b2p-1,
    0x1.f51f654d8f68cp-1,
    0x1.f0de784f0622ap-1,
    0x1.ec93abdf982d2p-1,
    0x1.e83e9337a6f04p-1,
    0x1.e3debb5d2ee02p-1,
    0x1.df73aa9f17656p-1,
    0x1.dafce0023b8c8p-1,
    0x1.d679d29e41f14p-1,
    0x1.d1e9f0e80b74bp-1,
    0x1.cd4c9fe72268fp-1,
    0x1.c8a13a5323b66p-1,
    0x1.c3e70f9594ef8p-1,
    0x1.bf1d62abf8239p-1,
    0x1.ba4368e529f4p-1,
    0x1.b558487427a2fp-1,
    0x1.b05b16d136ca2p-1,
    0x1.ab4ad6e101636p-1,
    0x1.a62676d77cd5fp-1,
    0x1.a0eccdca4a731p-1,
    0x1.9b9c98e38c54dp-1,
    0x1.96347822c1efp-1,
    0x1.90b2ea94ecf9ep-1,
    0x1.8b1649e7b769fp-1,
    0x1.855cc53430a7dp-1,
    0x1.7f845ad46f549p-1,
    0x1.798ad10b32a7ep-1,
    0x1.736dad346f8adp-1,
    0x1.6d2a292000576p-1,
    0x1.66bd261a37c44p-1,
    0x1.60231cfd97ef1p-1,
    0x1.59580a707ce9cp-1,
    0x1.52575621ad379p-1,
    0x1.4b1bb363dfeadp-1,
    0x1.439ef8dff9b5ap-1,
    0x1.3bd9ec1a2b134p-1,
    0x1.33c3fc05791fap-1,
    0x1.2b52e3863d885p-1,
    0x1.227a28f7a1afap-1,
    0x1.192a69741367dp-1,
    0x1.0f5053b025d4ap-1,
    0x1.04d32278ebbb4p-1,
    0x1.f32482d4cd5dp-2,
    0x1.dac2f5a747281p-2,
    0x1.c004d2f386207p-2,
    0x1.a230c2e4cd0cbp-2,
    0x1.801fce82fa71ap-2,
    0x1.57cb938443b71p-2,
    0x1.250af3c2c5bc6p-2,
    0x1.b8d0be3fdf702p-3,
    0x0p+0,
};
static const double zig_f[257] = {
    0x1.4a605b6b9f70dp-10,
    0x1.4a605b6b9f70dp-10,
    0x1.55f9f43c1b07p-9,
    0x1.08a1f03b0b205p-8,
    0x1.69ea8d90cb864p-8,
    0x1.ce160f8ec683cp-8,
    0x1.1a59229952f95p-7,
    0x1.4eb96421acfe7p-7,
    0x1.841040d8da47ep-7,
    0x1.ba48d274f8fb3p-7,
    0x1.f152a4f72dd53p-7,
    0x1.149033460301ap-6,
    0x1.30d388dab5e1ap-6,
    0x1.4d6eaf2fbb067p-6,
    0x1.6a5daf40bbf87p-6,
    0x1.879d1b600c10bp-6,
    0x1.a529f4e22ebf4p-6,
    0x1.c301983cd0912p-6,
    0x1.e121adb828c69p-6,
    0x1.ff881d718a5b5p-6,
    0x1.0f1982e968009p-5,
    0x1.1e9059f1f6ab6p-5,
    0x1.2e27ce83df495p-5,
    0x1.3ddf2ce98eec7p-5,
    0x1.4db5d0e11275cp-5,
    0x1.5dab23cf2add1p-5,
    0x1.6dbe9b398d062p-5,
    0x1.7defb77af271cp-5,
    0x1.8e3e02a68b5a9p-5,
    0x1.9ea90f9295561p-5,
    0x1.af30790385f6fp-5,
    0x1.bfd3e0f282a2cp-5,
    0x1.d092efeadf162p-5,
    0x1.e16d547b25185p-5,
    0x1.f262c2b6c6e34p-5,
    0x1.01b979e30e496p-4,
    0x1.0a4ed2c159622p-4,
    0x1.12f14d0f2179dp-4,
    0x1.1ba0cbe97897ep-4,
    0x1.245d344dd0d8fp-4,
    0x1.2d266cf9b310dp-4,
    0x1.35fc5e4d93e69p-4,
    0x1.3edef23269a81p-4,
    0x1.47ce1401b2212p-4,
    0x1.50c9b06fa2babp-4,
    0x1.59d1b5774669dp-4,
    0x1.62e6124854d1p-4,
    0x1.6c06b73694a46p-4,
    0x1.753395aaa116dp-4,
    0x1.7e6ca013eefccp-4,
    0x1.87b1c9dbf2846p-4,
    0x1.9103075a4a09fp-4,
    0x1.9a604dc9d5b0bp-4,
    0x1.a3c9933ea627bp-4,
    0x1.ad3ece9caf627p-4,
    0x1.b6bff78f2e228p-4,
    0x1.c04d0680b100ap-4,
    0x1.c9e5f493b7404p-4,
    0x1.d38abb9bd91dcp-4,
    0x1.dd3b56176e88bp-4,
    0x1.e6f7bf29aa546p-4,
    0x1.f0bff29520e16p-4,
    0x1.fa93ecb6b222bp-4,
    0x1.0239d54067d29p-3,
    0x1.072f94bb8bf84p-3,
    0x1.0c2b33d5209b9p-3,
    0x1.112cb1da26eb8p-3,
    0x1.16340e5a82d62p-3,
    0x1.1b41492757d42p-3,
    0x1.2054625183c34p-3,
    0x1.256d5a2835eb6p-3,
    0x1.2a8c3137a071bp-3,
    0x1.2fb0e847c2a65p-3,
    0x1.34db805b4ab89p-3,
    0x1.3a0bfaae8d7eep-3,
    0x1.3f4258b6931afp-3,
    0x1.447e9c20375d6p-3,
    0x1.49c0c6cf5ce3p-3,
    0x1.4f08dade31fc6p-3,
    0x1.5456da9c8683bp-3,
    0x1.59aac88f31d74p-3,
    0x1.5f04a76f884p-3,
    0x1.64647a2adf1a4p-3,
    0x1.69ca43e21f261p-3,
    0x1.6f3607e964719p-3,
    0x1.74a7c9c7ab5a8p-3,
    0x1.7a1f8d368a323p-3,
    0x1.7f9d5621f7174p-3,
    0x1.852128a819a38p-3,
    0x1.8aab09192815ap-3,
    0x1.903afbf74fa69p-3,
    0x1.95d105f6a7c27p-3,
    0x1.9b6d2bfd2fe5ap-3,
    0x1.a10f7322d7e3cp-3,
    0x1.a6b7e0b19267cp-3,
    0x1.ac667a2571805p-3,
    0x1.b21b452ccd13ap-3,
    0x1.b7d647a8731abp-3,
    0x1.bd9787abe18a2p-3,
    0x1.c35f0b7d89d46p-3,
    0x1.c92cd9971df52p-3,
    0x1.cf00f8a5e6fcap-3,
    0x1.d4db6f8b2514cp-3,
    0x1.dabc455c79006p-3,
    0x1.e0a3816457181p-3,
    0x1.e6912b2283cd9p-3,
    0x1.ec854a4c99c3ep-3,
    0x1.f27fe6ce998ccp-3,
    0x1.f88108cb8322fp-3,
    0x1.fe88b89df93bcp-3,
    0x1.024b7f6c7747ap-2,
    0x1.0555f2242e9d4p-2,
    0x1.0863b8f904331p-2,
    0x1.0b74d88b242d4p-2,
    0x1.0e895598709bdp-2,
    0x1.11a134fcf241dp-2,
    0x1.14bc7bb34ee63p-2,
    0x1.17db2ed5454e5p-2,
    0x1.1afd539c2f04cp-2,
    0x1.1e22ef6188113p-2,
    0x1.214c079f7cc9cp-2,
    0x1.2478a1f17de86p-2,
    0x1.27a8c414db11bp-2,
    0x1.2adc73e963fdap-2,
    0x1.2e13b77210764p-2,
    0x1.314e94d5af62dp-2,
    0x1.348d125f9d19cp-2,
    0x1.37cf368081376p-2,
    0x1.3b1507cf143acp-2,
    0x1.3e5e8d08ed2d8p-2,
    0x1.41abcd1357a18p-2,
    0x1.44fccefc324fcp-2,
    0x1.485199fad6ad4p-2,
    0x1.4baa357109ca2p-2,
    0x1.4f06a8ebf6d91p-2,
    0x1.5266fc2533beap-2,
    0x1.55cb3703d00fdp-2,
    0x1.5933619d6eebcp-2,
    0x1.5c9f84376c241p-2,
    0x1.600fa7480d2c6p-2,
    0x1.6383d377be513p-2,
    0x1.66fc11a25cbdfp-2,
    0x1.6a786ad88de1ep-2,
    0x1.6df8e86124ca6p-2,
    0x1.717d93ba96148p-2,
    0x1.7506769c7b1e8p-2,
    0x1.78939af9252e6p-2,
    0x1.7c250aff414acp-2,
    0x1.7fbad11b8d90dp-2,
    0x1.8354f7faa0dd5p-2,
    0x1.86f38a8ac5ab2p-2,
    0x1.8a9693fde9185p-2,
    0x1.8e3e1fcb9f113p-2,
    0x1.91ea39b33cb13p-2,
    0x1.959aedbe09f8fp-2,
    0x1.995048418c0c3p-2,
    0x1.9d0a55e1e93dcp-2,
    0x1.a0c923946843bp-2,
    0x1.a48cbea20c04bp-2,
    0x1.a85534aa4d87dp-2,
    0x1.ac2293a5f5a9ap-2,
    0x1.aff4e9ea1855p-2,
    0x1.b3cc462b331c8p-2,
    0x1.b7a8b78071319p-2,
    0x1.bb8a4d6716d8fp-2,
    0x1.bf7117c616a14p-2,
    0x1.c35d26f1d2cb5p-2,
    0x1.c74e8bb00d7c3p-2,
    0x1.cb45573c0a843p-2,
    0x1.cf419b4ae5b69p-2,
    0x1.d3436a102107bp-2,
    0x1.d74ad6426de2dp-2,
    0x1.db57f320b56abp-2,
    0x1.df6ad47763a03p-2,
    0x1.e3838ea5f9b7ep-2,
    0x1.e7a236a4ec3bfp-2,
    0x1.ebc6e20bd1f4fp-2,
    0x1.eff1a717e8f8ep-2,
    0x1.f4229cb2f7aecp-2,
    0x1.f859da7a900c4p-2,
    0x1.fc9778c7bbd9bp-2,
    0x1.006dc85b8cac2p-1,
    0x1.02931e18b8228p-1,
    0x1.04bbcafa63f2bp-1,
    0x1.06e7dccf03c33p-1,
    0x1.091761d995d7dp-1,
    0x1.0b4a68d70d9abp-1,
    0x1.0d8101041429cp-1,
    0x1.0fbb3a232590fp-1,
    0x1.11f9248311f34p-1,
    0x1.143ad105ea998p-1,
    0x1.16805128639d6p-1,
    0x1.18c9b709b3c4dp-1,
    0x1.1b171573fd10ep-1,
    0x1.1d687fe549966p-1,
    0x1.1fbe0a992961dp-1,
    0x1.2217ca92ff7eep-1,
    0x1.2475d5a90db8p-1,
    0x1.26d84290504e9p-1,
    0x1.293f28e93cd11p-1,
    0x1.2baaa14d79545p-1,
    0x1.2e1ac55ea3beap-1,
    0x1.308fafd6438ebp-1,
    0x1.33097c9703a32p-1,
    0x1.358848bf550e6p-1,
    0x1.380c32bda00d2p-1,
    0x1.3a955a662cd0bp-1,
    0x1.3d23e10af31a1p-1,
    0x1.3fb7e99585b7fp-1,
    0x1.425198a355fep-1,
    0x1.44f114a493676p-1,
    0x1.479685fdf500fp-1,
    0x1.4a42172dc5276p-1,
    0x1.4cf3f4f494ebep-1,
    0x1.4fac4e820b665p-1,
    0x1.526b55a656cd3p-1,
    0x1.55313f08d9e44p-1,
    0x1.57fe4264c8d8cp-1,
    0x1.5ad29acc85c85p-1,
    0x1.5dae86f4aff66p-1,
    0x1.6092498802661p-1,
    0x1.637e298550c15p-1,
    0x1.667272a92e32p-1,
    0x1.696f75e513b26p-1,
    0x1.6c7589e635a86p-1,
    0x1.6f850baea7aebp-1,
    0x1.729e5f43f6d0ep-1,
    0x1.75c1f0770d852p-1,
    0x1.78f033ca0b0d2p-1,
    0x1.7c29a779c6855p-1,
    0x1.7f6ed4b20e2c8p-1,
    0x1.82c050f56cf6bp-1,
    0x1.861ebfc37bca8p-1,
    0x1.898ad48badefep-1,
    0x1.8d0554fe60aa4p-1,
    0x1.908f1bd31714bp-1,
    0x1.94291c21b7a43p-1,
    0x1.97d4657617abep-1,
    0x1.9b9228d24067ep-1,
    0x1.9f63bee651fd5p-1,
    0x1.a34aafdf5af0cp-1,
    0x1.a748bd550c9dep-1,
    0x1.ab5fef17a2502p-1,
    0x1.af92a3f6ce8ap-1,
    0x1.b3e3a8234dd0ep-1,
    0x1.b85653a8ff54fp-1,
    0x1.bceeb4ee1dc7fp-1,
    0x1.c1b1cd9eebae7p-1,
    0x1.c6a5ecea9787cp-1,
    0x1.cbd33a8a72de8p-1,
    0x1.d144978a119d9p-1,
    0x1.d70920657bcefp-1,
    0x1.dd36fa704de92p-1,
    0x1.e3f11e027f074p-1,
    0x1.eb7545b6ca912p-1,
    0x1.f446ac979f084p-1,
    0x1p+0,
};

/* The ziggurat's rare paths for a 32-bit word w whose fast test failed: the tail (layer 0,
 * x >= r: Marsaglia's method, a = -ln(u1) / r, b = -ln(u2) until 2b >= a^2, x = r + a, u1
 * and u2 53-bit uniforms in (0, 1]), the wedge (layer i >= 1, x >= zig_x[i+1]: accept iff a
 * 53-bit uniform height in layer i lies below f(x)), or a rejection: a new 32-bit word from
 * the stream and the whole test again. Returns |z|; the sign is w's bit 8. */
/* fv_dp_u64 by a memcpy from the buffer (the same 8 bytes, not one at a time). */
static uint64_t u64_read(fv_dp_stream_t *s)
{
    uint8_t b[8];
    stream_read(s, b, sizeof b);
    return le64(b);
}

static double zig_slow(fv_dp_stream_t *s, uint32_t w)
{
    for (;;) {
        unsigned layer = w & 255u;
        double x = (double)(w >> 9) * zig_x[layer] * 0x1p-23;
        if (x < zig_x[layer + 1])
            return x;
        if (layer == 0) {
            const double r = zig_x[1];
            for (;;) {
                double a = -log_u53(u64_read(s) >> 11) / r, b = -log_u53(u64_read(s) >> 11);
                if (b + b >= a * a)
                    return r + a;
            }
        }
        double u = (double)(u64_read(s) >> 11) * 0x1p-53; /* [0, 1) */
        double y = zig_f[layer] + u * (zig_f[layer + 1] - zig_f[layer]);
        if (y < exp_neg(-0.5 * x * x))
            return x;
        w = (uint32_t)u64_read(s);
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
            unsigned layer = w & 255u;
            double x = (double)(w >> 9) * zig_x[layer] * 0x1p-23;
            if (!(x < zig_x[layer + 1]))
                x = zig_slow(s, w); /* ~1%: draws more from the stream, after this chunk */
            /* z = -x when bit 8 is set, by the sign bit (no branch on a coin flip) */
            uint64_t xb;
            double z;
            memcpy(&xb, &x, sizeof xb);
            xb ^= (uint64_t)(w & 256u) << 55;
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
