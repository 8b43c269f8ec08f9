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
 * stream buffers 4 blocks (256 bytes); a bulk read (fv_dp_gauss_add_f32) drains the buffer
 * and then generates whole blocks straight into its own chunk at the next counter, which
 * yields the same bytes as the buffered path. The IETF counter is 32 bits: a stream ends
 * after 2^32 blocks (256 GiB); going past it is a programmer error (abort), as one DP-SGD
 * step uses 8 bytes per parameter and one row's Poisson draw 8 bytes.
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
 *  - fv_dp_poisson(q): keeps row i iff a 64-bit uniform is below T = ceil(q 2^64) (q 2^64
 *    and its ceiling are exact in double; q >= 1 keeps all without drawing, q <= 0 or NaN
 *    none). P(keep) = T / 2^64: exactly q when q is a multiple of 2^-64 (every double q >= 2^-11
 *    is), else at most 2^-64 above q.
 *
 * The float sampler (fv_dp_gauss_add_f32). Box-Muller in double: per pair of 64-bit words
 * a, b: u1 = (a>>11 + 1) 2^-53 in (0, 1], u2 = (b>>11) 2^-53 in [0, 1), r = std sqrt(-2 ln
 * u1), z0 = r cos(2 pi u2) to out[i], z1 = r sin(2 pi u2) to out[i+1], each out = (float)
 * (out + z) rounded once (an odd n drops the last z1). ln and sincos are not libm's: log_u53
 * is fdlibm's log with the exponent read from the integer, sincos_turn takes the quadrant
 * exactly from the integer's top bits and runs fdlibm's kernel polynomials on [-pi/4, pi/4]
 * (both tested against long-double logl, sinl, cosl: errors below 4e-16 relative, 1e-15
 * absolute). So the numbers are the same bits on every IEEE-754 host (only +, *, /, sqrt,
 * correctly rounded; crypto/meson.build turns off FMA contraction), not tied to a libm
 * version, and the loop makes no calls (libm's sincos was ~40% of the time).
 * What it gives: a keyed, reproducible sample of N(0, std^2) up to double rounding and the
 * 53-bit grid of u1, u2 (|z| <= sqrt(2 ln 2^53) = 8.57: the tail beyond 8.57 std, mass
 * 1e-17, is cut). What it does NOT give: DP exactly as the Gaussian mechanism's proof
 * states it. Mironov 2012 ("On significance of the least significant bits for differential
 * privacy") showed that textbook floating-point Laplace samplers leak through which doubles
 * can occur (the set of reachable outputs depends on the input, so low bits can reveal it)
 * and broke them; the same argument applies to out + noise rounded to float here. This is
 * DP-SGD's noise as Opacus (torch.normal) and TF Privacy (tf.random.normal) add it, with
 * the same caveat: the accountant (model/rdp.c) treats it as the ideal Gaussian. Where
 * exactness matters (distributed mode, whose noise several parties' sums rely on) the
 * noise is the exact discrete Gaussian above, on integers.
 *
 * Cost (tests/bench/bench_dpnoise.c, release build, thread CPU time, best of 9, on the
 * shared 2-vCPU development VM at load 15-18, three runs; ratio to libsodium's raw ChaCha20
 * keystream of the same bytes in the same run): fv_dp_gauss_add_f32 14.6-15.5 ns per float
 * (8 bytes of keystream, 4.3-4.5 ns: ratio 3.3-3.5); fv_dp_dgauss 232-235 ns per sample at
 * sigma2 = 2^20 (18.7 bytes: ratio 23) and 235-247 ns at 2^40 (22.8 bytes: ratio 19-20),
 * about half of it in fv_dp_bernoulli, whose branches on random bits cannot be predicted;
 * fv_dp_poisson 5.3-5.5 ns per row (ratio 1.2-1.3).
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
/* Chunk of keystream the float sampler reads at once (pairs of 64-bit words). */
#define GAUSS_PAIRS 256u
/* Rows fv_dp_poisson decides per keystream read. */
#define POISSON_ROWS 512u

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

/* sin and cos of 2 pi b / 2^53 for b < 2^53. The quadrant comes from the integer exactly:
 * b + 2^50 = q 2^51 + g + 2^50 with g in [-2^50, 2^50), so the angle is q pi/2 + y with y =
 * (pi/2) g 2^-51 in [-pi/4, pi/4); sin y and cos y are fdlibm's kernel polynomials
 * (__kernel_sin, __kernel_cos: error below 2^-58 on |y| <= pi/4). */
static inline void sincos_turn(uint64_t b, double *ret_sin, double *ret_cos)
{
    const double pio2_2m51 = 1.5707963267948966192313216916398 / 2251799813685248.0;
    uint64_t r = b + (UINT64_C(1) << 50);
    unsigned q = (unsigned)(r >> 51) & 3u;
    int64_t g = (int64_t)(r & ((UINT64_C(1) << 51) - 1)) - (INT64_C(1) << 50);
    double y = (double)g * pio2_2m51, z = y * y;
    double sy =
        y +
        y * z *
            (-1.66666666666666324348e-01 +
             z * (8.33333333332248946124e-03 +
                  z * (-1.98412698298579493134e-04 +
                       z * (2.75573137070700676789e-06 +
                            z * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10)))));
    double cy =
        1.0 - 0.5 * z +
        z * z *
            (4.16666666666666019037e-02 +
             z * (-1.38888888888741095749e-03 +
                  z * (2.48015872894767294178e-05 +
                       z * (-2.75573143513906633035e-07 +
                            z * (2.08757232129817482790e-09 + z * -1.13596475577881948265e-11)))));
    /* q = 0: (s, c); 1: (c, -s); 2: (-s, -c); 3: (-c, s) */
    double a = (q & 1u) ? cy : sy, c = (q & 1u) ? sy : cy;
    *ret_sin = (q & 2u) ? -a : a;
    *ret_cos = ((q + 1u) & 2u) ? -c : c;
}

void fv__dp_sincos_turn(uint64_t b, double *ret_sin, double *ret_cos)
{
    sincos_turn(b, ret_sin, ret_cos);
}

double fv__dp_log_u53(uint64_t x)
{
    return log_u53(x);
}

void fv_dp_gauss_add_f32(fv_dp_stream_t *s, double std, float *out, size_t n)
{
    uint8_t chunk[GAUSS_PAIRS * 16];
    assert(std >= 0 && isfinite(std));
    if (std == 0 || n == 0)
        return;
    size_t i = 0;
    while (i < n) {
        size_t pairs = (n - i + 1) / 2;
        if (pairs > GAUSS_PAIRS)
            pairs = GAUSS_PAIRS;
        stream_read(s, chunk, pairs * 16);
        for (size_t p = 0; p < pairs; p++) {
            uint64_t a = le64(chunk + 16 * p), b = le64(chunk + 16 * p + 8);
            /* u1 = (a>>11 + 1) 2^-53 in (0, 1], u2 = (b>>11) 2^-53 in [0, 1) */
            double r = std * sqrt(-2.0 * log_u53(a >> 11)), sn, cs;
            sincos_turn(b >> 11, &sn, &cs); /* angle 2 pi u2 */
            out[i] = (float)((double)out[i] + r * cs);
            i++;
            if (i < n) {
                out[i] = (float)((double)out[i] + r * sn);
                i++;
            }
        }
    }
    sodium_memzero(chunk, sizeof chunk);
}

size_t fv_dp_poisson(fv_dp_stream_t *s, double q, size_t n, size_t *idx)
{
    size_t k = 0;

    if (q >= 1.0) {
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        return n;
    }
    if (!(q > 0.0))
        return 0;
    /* q 2^64 < 2^64 is exact (a power-of-two scaling), so is its ceiling */
    uint64_t thr = (uint64_t)ceil(ldexp(q, 64));
    uint8_t chunk[POISSON_ROWS * 8];
    for (size_t i = 0; i < n;) {
        size_t m = n - i < POISSON_ROWS ? n - i : POISSON_ROWS;
        stream_read(s, chunk, m * 8);
        for (size_t j = 0; j < m; j++, i++)
            if (le64(chunk + 8 * j) < thr)
                idx[k++] = i;
    }
    sodium_memzero(chunk, sizeof chunk);
    return k;
}
