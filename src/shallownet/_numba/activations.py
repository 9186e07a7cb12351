"""The activations g and g' of the Numba kernels, float64 and float32.

No libm call and no branch, so that LLVM vectorises the loops around them
(formulas and their errors: docs/kernels.md, tests/test_backends.py).
``activation(z, code)`` is the single dispatch: ``code`` is a compile-time
constant, so the choice is made while typing and a fit compiles only its own
activation.
"""

import numpy as np
from numba import njit, types
from numba.core import errors
from numba.extending import overload

from .._activations import IDENTITY, RELU, SIGMOID, TANH
from .calls import kernel
from .intrinsics import bits_float64, float64_bits, larger, pow2_float32, smaller, wide_vectors
from .jit import JIT

# ---------------------------------------------------------------- activations
# No libm call and no branch, so that LLVM vectorises the loops around them.

_INV_LN2 = 1.4426950408889634
_SHIFT = 6755399441055744.0            # 1.5 * 2**52: adding it rounds to an integer
_LN2_HI = 6.93147180369123816490e-01   # ln 2 to 32 bits: m * _LN2_HI is exact for |m| < 2**21
_LN2_LO = 1.90821492927058770002e-10
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (
    1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
    1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800)
# the [6/6] Pade approximant of exp(r) is (E + r O) / (E - r O) with
# E = 1 + 5 r^2 / 44 + r^4 / 792 + r^6 / 665280 and 2 O = 1 + r^2 / 33 + r^4 / 7920
_P2, _P4, _P6 = 5.0 / 44, 1.0 / 792, 1.0 / 665280
_Q2, _Q4 = 2.0 / 66, 2.0 / 15840


@njit(inline="always", **JIT)
def _reduce(x):
    """(kd, r) with x = m ln2 + r, |r| <= ln(2)/2, and m in the low bits of kd."""
    kd = x * _INV_LN2 + _SHIFT
    m = kd - _SHIFT                          # round(x / ln 2), still a float
    return kd, (x - m * _LN2_HI) - m * _LN2_LO


@njit(inline="always", **JIT)
def _pow2(kd):
    """2**m for the kd of _reduce: m + 1023 shifted into the exponent field."""
    return bits_float64((float64_bits(kd) + 1023) << 52)


@njit(inline="always", **JIT)
def _exp_parts(x):
    """(s, p) with exp(x) = s * (1 + p) and expm1(x) = s*p + (s - 1), x in [-708, 708]."""
    kd, r = _reduce(x)
    q = _C12 + r * _C13
    q = _C11 + r * q
    q = _C10 + r * q
    q = _C9 + r * q
    q = _C8 + r * q
    q = _C7 + r * q
    q = _C6 + r * q
    q = _C5 + r * q
    q = _C4 + r * q
    q = _C3 + r * q
    q = _C2 + r * q
    p = r + (r * r) * q                      # expm1(r), Taylor to degree 13
    return _pow2(kd), p


@njit(inline="always", **JIT)
def _tanh(z):
    """sign(z) e / (e + 2), e = expm1(2|z|) = U / D with exp(r) the [6/6] Pade
    approximant (E + r O) / (E - r O): one division for both (docs/kernels.md)."""
    kd, r = _reduce(2.0 * smaller(abs(z), 20.0))
    r2 = r * r
    E = 1.0 + r2 * (_P2 + r2 * (_P4 + r2 * _P6))
    O2 = 1.0 + r2 * (_Q2 + r2 * _Q4)          # 2 O
    N = r * O2                               # 2 r O
    D = E - 0.5 * N                          # E - r O
    s = _pow2(kd)
    U = s * N + (s - 1.0) * D                # expm1(x) D, exactly 2 r O when m = 0
    # tanh = U / (U + 2D) = 1 - q, q = 2D / (U + 2D): near saturation 1 - q
    # is rounded once from an accurate q, as correctly rounded as libm's tanh
    D2 = D + D
    w = 1.0 / (U + D2)
    q = D2 * w
    return np.copysign(1.0 - q if q < 0.5 else U * w, z)


@njit(inline="always", **JIT)
def _sigmoid(z):
    s, p = _exp_parts(smaller(larger(-z, -708.0), 708.0))
    # 1 + exp(-z) = (1 + s) + s*p: 1 + s is exact (or s when 1 is below its
    # rounding), so the denominator is rounded once, in the FMA
    return 1.0 / ((1.0 + s) + s * p)


# The float32 forms: the same functions in float32 arithmetic, so that a
# float32 loop runs twice the lanes of a float64 one (docs/kernels.md; errors
# stated in tests/test_backends.py). Every constant is a float32, or LLVM
# would widen the arithmetic to float64.
_F = np.float32
_INV_LN2_F = _F(1.4426950408889634)
_SHIFT_F = _F(12582912.0)              # 1.5 * 2**23
_LN2_HI_F = _F(0.693145751953125)      # m * _LN2_HI_F is exact for |m| < 2**9
_LN2_LO_F = _F(1.4286068202862268e-06)
# past 9.02 tanh rounds to 1 in float32; up to 44 2**m stays a normal float32
# and g' = q (2 - q) keeps following 4 exp(-2|z|) down to 1e-38
_TANH_SATURATE_F = _F(44.0)
_EXP_MIN_F, _EXP_MAX_F = _F(-87.0), _F(88.0)
_ZERO_F, _HALF_F, _ONE_F, _TWO_F = _F(0.0), _F(0.5), _F(1.0), _F(2.0)
_P2_F, _Q2_F = _F(1.0 / 10), _F(1.0 / 60)  # [3/3] Pade: E = 1 + r^2/10, 2 O = 1 + r^2/60
_C2_F, _C3_F, _C4_F, _C5_F, _C6_F, _C7_F = (
    _F(1.0 / 2), _F(1.0 / 6), _F(1.0 / 24), _F(1.0 / 120), _F(1.0 / 720), _F(1.0 / 5040))


@njit(inline="always", **JIT)
def _reduce32(x):
    kd = x * _INV_LN2_F + _SHIFT_F
    m = kd - _SHIFT_F
    return kd, (x - m * _LN2_HI_F) - m * _LN2_LO_F


def _tanh32(z, code):
    """(tanh(z), 1 - tanh(z)^2) as _tanh with the [3/3] Pade approximant of
    exp(r); g' = q (2 - q) where |tanh| > 1/2 keeps its relative accuracy."""
    kd, r = _reduce32(_TWO_F * smaller(abs(z), _TANH_SATURATE_F))
    r2 = r * r
    E = _ONE_F + r2 * _P2_F
    N = r * (_ONE_F + r2 * _Q2_F)           # 2 r O
    D = E - _HALF_F * N                      # E - r O
    s = pow2_float32(kd)
    U = s * N + (s - _ONE_F) * D
    D2 = D + D
    w = _ONE_F / (U + D2)
    q = D2 * w
    saturating = q < _HALF_F
    t = _ONE_F - q if saturating else U * w
    g = q * (_TWO_F - q) if saturating else _ONE_F - t * t
    return np.copysign(t, z), g


def _sigmoid32(z, code):
    """(sigmoid(z), e sigmoid(z)^2) with e = exp(-z), Taylor to degree 7;
    below z = -88 sigmoid is 1 / (1 + exp(88)) ~ 6e-39."""
    kd, r = _reduce32(smaller(larger(-z, _EXP_MIN_F), _EXP_MAX_F))
    q = _C6_F + r * _C7_F
    q = _C5_F + r * q
    q = _C4_F + r * q
    q = _C3_F + r * q
    q = _C2_F + r * q
    p = r + (r * r) * q                      # expm1(r)
    s = pow2_float32(kd)
    sg = _ONE_F / ((_ONE_F + s) + s * p)
    e = s * p + s
    return sg, (e * sg) * sg

@njit(inline="always", **JIT)
def derivative64(a, code):
    """g'(z) from a = g(z), float64: the float64 forms' g', formula for
    formula (tests/test_backends.py holds the two to the same bits)."""
    if code == TANH:
        return 1.0 - a * a
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == RELU:
        return 1.0 if a > 0.0 else 0.0
    return 1.0


# The forms, (g(z), g'(z)) for ``activation(z, code)``: plain functions,
# each the overload's implementation itself. A lambda calling the form
# was one more inlining, and derivative64 inlined into the forms (its
# branches copied, then pruned) one more: 0.7% of a first fit each
# (docs/kernels.md, "Compiling on demand"); the float64 forms write
# derivative64's formula for their own activation.

def _tanh64(z, code):
    t = _tanh(z)
    return t, 1.0 - t * t


def _sigmoid64(z, code):
    s = _sigmoid(z)
    return s, s * (1.0 - s)


def _relu64(z, code):
    a = z if z > 0.0 else 0.0
    return a, 1.0 if a > 0.0 else 0.0


def _identity64(z, code):
    return z, 1.0


def _relu32(z, code):
    positive = z > _ZERO_F
    return (z if positive else _ZERO_F), (_ONE_F if positive else _ZERO_F)


def _identity32(z, code):
    return z, _ONE_F


_FORMS = {
    types.float64: {TANH: _tanh64, SIGMOID: _sigmoid64, RELU: _relu64, IDENTITY: _identity64},
    types.float32: {TANH: _tanh32, SIGMOID: _sigmoid32, RELU: _relu32, IDENTITY: _identity32},
}


def activation(z, code):
    """(g(z), g'(z)) in z's type, float64 or float32 (compiled code only);
    code is a compile-time constant."""


@overload(activation, jit_options=JIT)
def _activation(z, code):
    if not isinstance(code, types.IntegerLiteral):
        raise errors.TypingError(
            f"activation: the code must be a compile-time constant, got {code}")
    return _FORMS[z][code.literal_value]


@kernel(JIT)
def activate(z, a, g, code):
    """a[i] = g(z[i]), g[i] = g'(z[i]) for 1-D contiguous arrays of one dtype."""
    wide_vectors()
    for i in range(z.shape[0]):
        a[i], g[i] = activation(z[i], code)
