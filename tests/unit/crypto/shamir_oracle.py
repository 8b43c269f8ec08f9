#!/usr/bin/env python3
"""Independent oracle for crypto/shamir.c (Python 3 stdlib + the openssl command line).

Shares secret 00 01 .. 1f with threshold t among n holders exactly as the header and
shamir.c specify, without any fedvault code:
  * random source fv_rand_seeded_u64(seed): key = BLAKE2b-256(seed as u64 little-endian),
    stream = ChaCha20(key, nonce 0) from `openssl enc -chacha20`; every fill starts at a
    64-byte block boundary (the unused tail of its last block is skipped);
  * for chunk k = 0..4: one fill of 8(t-1) bytes -> t-1 u64 LE masked to 61 bits
    (a value equal to p would be redrawn; never happens here, asserted);
  * chunk k = bytes 7k..7k+6 (k < 4) or 28..31, little-endian; share x = f_k(x) mod p.
Then it reconstructs the secret from every t-subset of the first few shares by Lagrange
interpolation at 0 over Python big ints and checks it.

Usage: shamir_oracle.py SEED T N  -> prints "x y0 y1 y2 y3 y4" per share (decimal), which
test_shamir.c pins as its known answer (test_kat). Run by hand; the test does not need
Python. Debian's libgfshare was considered as an oracle and rejected: it works in GF(2^8)
with at most 255 shares, so it implements a different scheme.
"""
import hashlib
import itertools
import subprocess
import sys

P = (1 << 61) - 1


def chacha_stream(key, nbytes):
    return subprocess.run(
        ["openssl", "enc", "-chacha20", "-K", key.hex(), "-iv", "00" * 16],
        input=bytes(nbytes), capture_output=True, check=True).stdout


def main():
    seed, t, n = (int(a) for a in sys.argv[1:4])
    key = hashlib.blake2b(seed.to_bytes(8, "little"), digest_size=32).digest()
    m = t - 1
    blocks_per_fill = (8 * m + 63) // 64
    stream = chacha_stream(key, 64 * blocks_per_fill * 5 + 64)
    secret = bytes(range(32))
    offs, lens = [0, 7, 14, 21, 28], [7, 7, 7, 7, 4]
    polys = []
    for k in range(5):
        fill = stream[64 * blocks_per_fill * k:][:8 * m]
        coeffs = [int.from_bytes(fill[8 * j:8 * j + 8], "little") & P for j in range(m)]
        assert all(c != P for c in coeffs)
        c0 = int.from_bytes(secret[offs[k]:offs[k] + lens[k]], "little")
        polys.append([c0] + coeffs)
    shares = [(x, [sum(c * x**j for j, c in enumerate(f)) % P for f in polys])
              for x in range(1, n + 1)]
    for sub in itertools.combinations(shares[:min(n, t + 2)], t):
        out = b""
        for k in range(5):
            acc = 0
            for xi, yi in sub:
                num = den = 1
                for xj, _ in sub:
                    if xj != xi:
                        num = num * xj % P
                        den = den * (xj - xi) % P
                acc = (acc + yi[k] * num * pow(den, P - 2, P)) % P
            out += acc.to_bytes(lens[k], "little")
        assert out == secret, (sub, out.hex())
    for x, ys in shares:
        print(x, *ys)


if __name__ == "__main__":
    main()
