"""NumPy's epoch order and dropout bits inside compiled code, bit for bit.

The compiled engine runs many steps per call, so it draws what the loop would draw
without coming back to Python: ``data.arrays.epoch_permutation`` (``default_rng([seed,
epoch]).permutation(m)``) and ``core.dropout.step_masks``' raw numbers (``PCG64(SeedSequence(
[seed, epoch, step, 1]))``). Written here as NumPy writes them (``bit_generator.pyx``'s
SeedSequence with a pool of 4 words, ``pcg64.h``'s 128-bit LCG with the XSL-RR output,
the shuffle's ``random_interval``, masked 32-bit draws); ``tests/test_pcg.py`` holds every
function against NumPy for many seeds, epochs and sizes. A 128-bit number is a (high,
low) pair of uint64 (numba has no 128-bit integer type; the multiply is one LLVM i128
operation, ``_mul64``).

Importing this module needs numba; ``engines.kernels`` imports it.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["seed_words", "pcg64_state", "next64", "next32", "permutation", "raw_draws"]

_U64 = np.uint64
M32 = _U64(0xFFFFFFFF)
S16, S32, S58, S64_MINUS = _U64(16), _U64(32), _U64(58), _U64(64)
ONE, ZERO = _U64(1), _U64(0)
INIT_A, MULT_A = _U64(0x43B0D7E5), _U64(0x931E8875)
INIT_B, MULT_B = _U64(0x8B51F9DD), _U64(0x58F38DED)
MIX_L, MIX_R = _U64(0xCA01F9DD), _U64(0x4973F715)
MULT_HI, MULT_LO = _U64(2549297995355413924), _U64(4865540595714422341)


@njit(cache=True)
def seed_words(values):
    """SeedSequence's entropy words of a list of non-negative ints: each int as its
    32-bit words, least significant first (0 is one word), concatenated."""
    out = np.zeros(2 * values.shape[0], np.uint64)
    n = 0
    for v in values:
        x = _U64(v)
        out[n] = x & M32
        n += 1
        x >>= S32
        while x != ZERO:
            out[n] = x & M32
            n += 1
            x >>= S32
    return out[:n]


@njit(cache=True)
def _hashmix(value, hc):
    """(hashed value, next hash constant): SeedSequence's hashmix, mod 2^32."""
    value = (value ^ hc) & M32
    hc = (hc * MULT_A) & M32
    value = (value * hc) & M32
    return value ^ (value >> S16), hc


@njit(cache=True)
def _mix(x, y):
    r = (MIX_L * x - MIX_R * y) & M32
    return r ^ (r >> S16)


@njit(cache=True)
def _pool(words):
    """SeedSequence(words).pool: the 4 mixed entropy words."""
    pool = np.zeros(4, np.uint64)
    hc = INIT_A
    for i in range(4):
        pool[i], hc = _hashmix(words[i] if i < words.shape[0] else ZERO, hc)
    for src in range(4):
        for dst in range(4):
            if src != dst:
                h, hc = _hashmix(pool[src], hc)
                pool[dst] = _mix(pool[dst], h)
    for src in range(4, words.shape[0]):
        for dst in range(4):
            h, hc = _hashmix(words[src], hc)
            pool[dst] = _mix(pool[dst], h)
    return pool


@intrinsic
def _mul64(typingctx, a, b):
    """(high, low) words of the 128-bit product of two uint64: one LLVM i128 multiply
    (a single ``mul`` on x86-64)."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i64, i128 = ir.IntType(64), ir.IntType(128)
        p = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        hi = builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), i64)
        return context.make_tuple(builder, signature.return_type, [hi, builder.trunc(p, i64)])

    return sig, codegen


@njit(cache=True)
def _step(st):
    """state := state * MULT + inc (mod 2^128); st = [hi, lo, inc_hi, inc_lo, has32, u32]."""
    hi, lo = _mul64(st[1], MULT_LO)
    hi += st[1] * MULT_HI + st[0] * MULT_LO
    lo2 = lo + st[3]
    hi += st[2] + (ONE if lo2 < lo else ZERO)
    st[0], st[1] = hi, lo2


@njit(cache=True)
def pcg64_state(words):
    """The state of ``PCG64(SeedSequence(words))`` as a uint64 array of 6."""
    pool = _pool(words)
    s = np.zeros(8, np.uint64)  # generate_state(4, uint64): 8 words of 32 bits
    hc = INIT_B
    for i in range(8):
        d = (pool[i % 4] ^ hc) & M32
        hc = (hc * MULT_B) & M32
        d = (d * hc) & M32
        s[i] = d ^ (d >> S16)
    st = np.zeros(6, np.uint64)
    seed_hi, seed_lo = s[0] | (s[1] << S32), s[2] | (s[3] << S32)
    inc_hi, inc_lo = s[4] | (s[5] << S32), s[6] | (s[7] << S32)
    st[2] = (inc_hi << ONE) | (inc_lo >> _U64(63))  # inc = (initseq << 1) | 1
    st[3] = (inc_lo << ONE) | ONE
    _step(st)  # from state 0
    lo = st[1] + seed_lo
    st[0] += seed_hi + (ONE if lo < st[1] else ZERO)
    st[1] = lo
    _step(st)
    return st


@njit(cache=True)
def next64(st):
    """The next raw 64-bit number (``PCG64.random_raw``)."""
    _step(st)
    x = st[0] ^ st[1]
    rot = st[0] >> S58
    return (x >> rot) | (x << ((S64_MINUS - rot) & _U64(63)))


@njit(cache=True)
def next32(st):
    """The next 32-bit number: each 64-bit draw gives its low half, then its high half."""
    if st[4] != ZERO:
        st[4] = ZERO
        return st[5]
    x = next64(st)
    st[4], st[5] = ONE, x >> S32
    return x & M32


@njit(cache=True)
def permutation(st, m, out):
    """``Generator.permutation(m)`` into ``out`` (m <= 2^32): Fisher-Yates from the end,
    each index from NumPy's ``random_interval`` (32-bit draws masked to the bit length
    of i, drawn again while above i)."""
    for i in range(m):
        out[i] = i
    for i in range(m - 1, 0, -1):
        top = _U64(i)
        mask = top
        for s in (1, 2, 4, 8, 16):
            mask |= mask >> _U64(s)
        j = next32(st) & mask
        while j > top:
            j = next32(st) & mask
        out[i], out[j] = out[j], out[i]


@njit(cache=True)
def raw_draws(st, out):
    """``PCG64.random_raw(len(out))`` into ``out``."""
    for i in range(out.shape[0]):
        out[i] = next64(st)
