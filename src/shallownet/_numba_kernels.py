# Numba kernels of shallownet (design: docs/kernels.md; semantics: docs/training.md).
#
# Trains yhat = g(X W1 + b1) W2 + b2 on the weighted squared loss with an L2
# penalty: each epoch walks the rows (in order, or in a given order per epoch)
# in batches; a batch B with weight sum W_B > 0 takes
#   L_B = sum_{i in B} w_i sum_c (yhat_ic - y_ic)^2 / W_B + alpha (|W1|^2 + |W2|^2) / W_B
# and its four gradients, then one step of SGD (plain, momentum, Nesterov) or
# Adam. The whole block of epochs is one compiled call.
# Assumes validated input: X (n, d) and Y (n, k) C-contiguous, finite, float32
# or float64, possibly read-only; w (n,) finite, non-negative, of X's dtype;
# W1 (d, h), b1 (h,), W2 (h, k), b2 (k,) and the optimizer state C-contiguous,
# writable, of X's dtype; orders int64; losses float64 (the fit's curve).
# Writes the parameters and state in place and the block's slice of losses;
# never raises.
#
# Batches. Each batch runs the full-batch code of the seed on its own rows:
# chunks fixed by the batch's row count and the shapes (a batch of under
# ~2 M operations is one chunk, run serially: _plan), private accumulators
# reduced in chunk order, tiles. Rows in order: a batch is a slice of X (and
# of the transposed copy of X the explicit loops read), nothing is copied.
# Shuffled: each epoch walks the m <= n rows of its order; each batch's rows,
# Y rows and weights are gathered into buffers allocated once per fit, in the
# layout the tiles read (row-major for the GEMMs, transposed for the loops).
#
# Flags. fastmath 'contract' only (a*b + c may become an FMA: deterministic),
# except for the functions that sum over rows, which also allow 'reassoc' so
# that LLVM keeps vector partial sums: a fixed order for a compiled function,
# the same run to run and for every thread count (chunks are fixed by the
# batch's row count and reduced in chunk order), and the optimizer steps,
# which have no fastmath at all so that they round as the NumPy reference
# does. error_model='numpy' drops the ZeroDivisionError check on each
# division, a branch that would stop the loops vectorising.

import math

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from llvmlite.binding import get_host_cpu_features
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic, overload

from ._training import ADAM

IDENTITY, RELU, TANH, SIGMOID = 0, 1, 2, 3

_FASTMATH = {"contract"}
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
_JIT_ROW_SUM = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})
# fastmath=False set explicitly: an unset flag is inherited from the caller
_JIT_EXACT = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)

# Chunks: fixed by the batch's row count alone (docs/kernels.md): the largest
# power of two <= min(MAX_CHUNKS, n // min_rows) chunks (powers of two share
# out evenly over 2, 4, ... threads), where a chunk holds enough work to pay
# for the parallel region it may run in, on a busy machine too: a row costs
# h (2 (d + k) + 33) operations (a multiply-add each way per input and
# output, ~33 for the activation, its derivative and the rest), and a chunk
# needs CHUNK_MIN_OPS of them, ~0.3 ms single-threaded (3 G operations/s
# measured at (4000, 20, 100)): a region that waits tens of microseconds for
# a second thread costs a few percent. Below 2 * CHUNK_MIN_OPS a batch is one
# chunk, run serially: Adam's 200-row batches at (4000, 20, 100) (1.5 M
# operations) ran 15x slower in a 2-thread region per batch than serially
# with two busy processes on the 2 cores (OpenMP layer), and (1000, 1, 16)
# is at its single-core floor (docs/kernels.md). Tall GEMM tiles (d*h >=
# GEMM_TALL_DH) take at least GEMM_MIN_CHUNK_ROWS rows a chunk.
MAX_CHUNKS = 32
GEMM_MIN_CHUNK_ROWS = 2048
GEMM_TALL_DH = 4096
CHUNK_MIN_OPS = 1 << 20
# Two tile kernels, chosen by the shapes, and by whether the host has
# AVX-512: OpenBLAS's AVX-512 GEMM kernels gain more from it than the loops.
# With AVX-512 (measured single-threaded at n = 50000, tanh): the explicit
# loops won by 1.3-3x at h <= 8 and at d = 1, h = 16; they tied with the
# GEMMs at d*h = 64 with h >= 16, and lost by 1.3-2.5x from d*h = 160
# (h >= 16) or d*h = 256 (any h) on. Without it (Zen 3, AVX2 + FMA; full
# batch, 2 threads, 7 interleaved rounds, ms an epoch, loops against GEMMs):
# (100000, 4, 16) 2.92 against 4.26, (100000, 10, 32) 8.37 against 9.14,
# but (50000, 20, 32) 6.35 against 5.72 and (50000, 16, 64) 13.5 against
# 11.6; Adam's 200-row batches at (100000, 10, 32) 14.0 against 15.2.
# - explicit loops along the rows of a transposed tile, for narrow layers:
#   their tile buffers (a1 and g'(z1), h x T; yhat, k x T; the X tile, d x T)
#   stay within SMALL_TILE_BYTES of L2;
SMALL_TILE_BYTES = 256 * 1024
SMALL_TILE_MIN_ROWS = 64
SMALL_TILE_MAX_ROWS = 4096
# - BLAS GEMMs (_gemm) on transposed tiles (h x T), otherwise, with W1 and
#   its gradient transposed (h x d): OpenBLAS packs those layouts with
#   cheaper copies (_tile_gemm). T = 256 rows was the fastest of 128 ...
#   2048 at (n, d, h) = (50000, 10, 32), (50000, 100, 128) and
#   (20000, 784, 256) (row-major tiles), though within a few percent of
#   384 ... 1024; at 2048 the tile buffers leave L2 and it was 15-20% slower.
GEMM_TILE_ROWS = 256
_AVX512 = bool(get_host_cpu_features().get("avx512f", False))
GEMM_MIN_HIDDEN = 16
GEMM_MIN_DH = 64 if _AVX512 else 512
GEMM_ALWAYS_DH = 256 if _AVX512 else 512
# Shuffled batches: while gathering row i, prefetch row i + PREFETCH_ROWS of
# the batch. Measured at (n, d, h) = (100000, 10, 32), batches of 200, Adam,
# one thread: the cost of random over in-order rows fell from 2.5-4.5 ms to
# ~0.6 ms an epoch (of ~10); 32 was no better, prefetching the whole next
# batch at once saved only ~1 ms.
PREFETCH_ROWS = 16


# ---------------------------------------------------------------- bit casts

@intrinsic
def _float64_bits(typingctx, x):
    """The int64 holding the bits of the float64 x (an LLVM bitcast: no instruction)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _bits_float64(typingctx, x):
    """The float64 whose bits are the int64 x."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _pow2_float32(typingctx, kd):
    """2**m for the float32 kd of _reduce32: m + 127 shifted into the exponent field."""
    if kd != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.add(builder.bitcast(args[0], i32), i32(127))
        return builder.bitcast(builder.shl(bits, i32(23)), ir.FloatType())
    return types.float32(types.float32), codegen


# ---------------------------------------------------------------- BLAS

# The GEMMs of the wide layers call the Fortran dgemm/sgemm of
# scipy.linalg.cython_blas (the library the Cython kernels and Numba's np.dot
# use) by symbol name, so the compiled code stays cacheable (a ctypes
# function pointer would be a dynamic global) and can pass beta = 1:
# products accumulate into their gradient with no temporary and no add pass.
for _name in ("dgemm", "sgemm"):
    llvm_binding.add_symbol("shallownet_" + _name,
                            get_cython_function_address("scipy.linalg.cython_blas", _name))
_N, _T = ord("N"), ord("T")


@intrinsic
def _gemm(typingctx, transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """Column-major C (m x n, leading dimension ldc) := op(A) op(B) + beta C,
    op given by transa/transb (_N or _T): Fortran GEMM with alpha = 1, its
    scalar arguments passed by reference from stack slots. The arrays' data
    pointers only are read: the caller passes the layout in the leading
    dimensions. No checks (BLAS's own are of its arguments' values)."""
    if not (isinstance(c, types.Array) and c.dtype in (types.float32, types.float64)
            and isinstance(a, types.Array) and isinstance(b, types.Array)
            and a.dtype == c.dtype and b.dtype == c.dtype):
        return None
    symbol = "shallownet_dgemm" if c.dtype == types.float64 else "shallownet_sgemm"
    dtype = c.dtype

    def codegen(context, builder, signature, args):
        voidp = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [voidp] * 13), symbol)
        argtys = signature.args

        def by_reference(i, ty):
            value = context.cast(builder, args[i], argtys[i], ty)
            return builder.bitcast(cgutils.alloca_once_value(builder, value), voidp)

        def data(i):
            array = context.make_array(argtys[i])(context, builder, args[i])
            return builder.bitcast(array.data, voidp)

        one = builder.bitcast(
            cgutils.alloca_once_value(builder, context.get_constant(dtype, 1)), voidp)
        builder.call(fn, [by_reference(0, types.int8), by_reference(1, types.int8),
                          by_reference(2, types.int32), by_reference(3, types.int32),
                          by_reference(4, types.int32), one, data(5),
                          by_reference(6, types.int32), data(7), by_reference(8, types.int32),
                          by_reference(9, dtype), data(10), by_reference(11, types.int32)])
        return context.get_dummy_value()
    return types.none(transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc), codegen


# ---------------------------------------------------------------- dtype of the parameters

def _like(x, a):
    """The scalar x converted to the dtype of the array a (compiled code only)."""
    return a.dtype.type(x)


@overload(_like)
def _like_overload(x, a):
    if a.dtype == types.float32:
        return lambda x, a: np.float32(x)
    return lambda x, a: np.float64(x)


def _derivative_from_output(a):
    """True where g'(z) is computed from a1 = g(z) alone, exactly as the
    activation computes it: float64 (tanh 1 - a^2, sigmoid a (1 - a), relu
    and identity by sign). Not float32, whose tanh and sigmoid derivatives
    keep their accuracy near saturation with terms a1 does not hold."""
    return a.dtype == np.float64


@overload(_derivative_from_output)
def _derivative_from_output_overload(a):
    if a.dtype == types.float64:
        return lambda a: True
    return lambda a: False


@intrinsic
def _prefetch(typingctx, a, i):
    """A hint that element i (flat index) of the C-contiguous array a will be
    read soon: llvm.prefetch (read, keep in all cache levels). No effect on results."""
    if not isinstance(a, types.Array) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.bitcast(builder.gep(array.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        prefetch = builder.module.declare_intrinsic(
            "llvm.prefetch", [pointer.type],
            ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]))
        builder.call(prefetch, [pointer, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.none(a, i), codegen


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


@njit(inline="always", **_JIT)
def _reduce(x):
    """(kd, r) with x = m ln2 + r, |r| <= ln(2)/2, and m in the low bits of kd."""
    kd = x * _INV_LN2 + _SHIFT
    m = kd - _SHIFT                          # round(x / ln 2), still a float
    return kd, (x - m * _LN2_HI) - m * _LN2_LO


@njit(inline="always", **_JIT)
def _pow2(kd):
    """2**m for the kd of _reduce: m + 1023 shifted into the exponent field."""
    return _bits_float64((_float64_bits(kd) + 1023) << 52)


@njit(inline="always", **_JIT)
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


@njit(inline="always", **_JIT)
def _tanh(z):
    """sign(z) e / (e + 2), e = expm1(2|z|) = U / D with exp(r) the [6/6] Pade
    approximant (E + r O) / (E - r O): one division for both (docs/kernels.md)."""
    kd, r = _reduce(2.0 * min(abs(z), 20.0))
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


@njit(inline="always", **_JIT)
def _sigmoid(z):
    s, p = _exp_parts(min(max(-z, -708.0), 708.0))
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


@njit(inline="always", **_JIT)
def _reduce32(x):
    kd = x * _INV_LN2_F + _SHIFT_F
    m = kd - _SHIFT_F
    return kd, (x - m * _LN2_HI_F) - m * _LN2_LO_F


@njit(inline="always", **_JIT)
def _tanh32(z):
    """(tanh(z), 1 - tanh(z)^2) as _tanh with the [3/3] Pade approximant of
    exp(r); g' = q (2 - q) where |tanh| > 1/2 keeps its relative accuracy."""
    kd, r = _reduce32(_TWO_F * min(abs(z), _TANH_SATURATE_F))
    r2 = r * r
    E = _ONE_F + r2 * _P2_F
    N = r * (_ONE_F + r2 * _Q2_F)           # 2 r O
    D = E - _HALF_F * N                      # E - r O
    s = _pow2_float32(kd)
    U = s * N + (s - _ONE_F) * D
    D2 = D + D
    w = _ONE_F / (U + D2)
    q = D2 * w
    saturating = q < _HALF_F
    t = _ONE_F - q if saturating else U * w
    g = q * (_TWO_F - q) if saturating else _ONE_F - t * t
    return np.copysign(t, z), g


@njit(inline="always", **_JIT)
def _sigmoid32(z):
    """(sigmoid(z), e sigmoid(z)^2) with e = exp(-z), Taylor to degree 7;
    below z = -88 sigmoid is 1 / (1 + exp(88)) ~ 6e-39."""
    kd, r = _reduce32(min(max(-z, _EXP_MIN_F), _EXP_MAX_F))
    q = _C6_F + r * _C7_F
    q = _C5_F + r * q
    q = _C4_F + r * q
    q = _C3_F + r * q
    q = _C2_F + r * q
    p = r + (r * r) * q                      # expm1(r)
    s = _pow2_float32(kd)
    sg = _ONE_F / ((_ONE_F + s) + s * p)
    e = s * p + s
    return sg, (e * sg) * sg


@njit(inline="always", **_JIT)
def _derivative64(a, code):
    """g'(z) from a = g(z), float64 (activation64 forms its g' with it too)."""
    if code == TANH:
        return 1.0 - a * a
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == RELU:
        return 1.0 if a > 0.0 else 0.0
    return 1.0


def _activation(z, code):
    """(g(z), g'(z)) in z's type, float64 or float32 (compiled code only).
    Every caller passes code as a constant, so the branches fold away (a
    loop-invariant branch left in a loop would stop it from vectorising)."""


@overload(_activation, jit_options=_JIT)
def _activation_overload(z, code):
    if z == types.float32:
        def activation32(z, code):
            if code == TANH:
                return _tanh32(z)
            if code == SIGMOID:
                return _sigmoid32(z)
            if code == RELU:
                positive = z > _ZERO_F
                return (z if positive else _ZERO_F), (_ONE_F if positive else _ZERO_F)
            return z, _ONE_F
        return activation32

    def activation64(z, code):
        # g' from g(z) by _derivative64, which the one-buffer GEMM tiles
        # call on a stored a1: both get the same expressions
        if code == TANH:
            t = _tanh(z)
            return t, _derivative64(t, TANH)
        if code == SIGMOID:
            s = _sigmoid(z)
            return s, _derivative64(s, SIGMOID)
        if code == RELU:
            a = z if z > 0.0 else 0.0
            return a, _derivative64(a, RELU)
        return z, 1.0
    return activation64


@njit(inline="always", **_JIT)
def _activate_loop(z, a, g, code):
    for i in range(z.shape[0]):
        a[i], g[i] = _activation(z[i], code)


@njit(**_JIT)
def activate(z, a, g, code):
    """a[i] = g(z[i]), g[i] = g'(z[i]) for 1-D contiguous arrays of one dtype."""
    # one loop per activation, each with a constant code (see _activation)
    if code == TANH:
        _activate_loop(z, a, g, TANH)
    elif code == SIGMOID:
        _activate_loop(z, a, g, SIGMOID)
    elif code == RELU:
        _activate_loop(z, a, g, RELU)
    else:
        _activate_loop(z, a, g, IDENTITY)


# ---------------------------------------------------------------- explicit tiles
# For narrow layers a loop along h (h < 16) does not fill a vector, so a tile
# is worked on transposed (hidden unit x row): every loop runs along the
# tile's T contiguous rows, one hidden unit j at a time (X is transposed once
# per fit). Sums over rows are in functions of their own with fastmath
# 'reassoc' (see the header); everything else is 'contract' only.

@njit(inline="always", **_JIT)
def _forward_loop(x, w, bias, accumulate, a, g, yhat0, w2, code):
    """The last feature's pass of z1_j: z = (g[i] if accumulate else bias) + w x[i];
    a = g(z), g = g'(z); yhat0 += w2 a."""
    # two loops rather than one reading a second name for g: LLVM's runtime
    # overlap check would fail on the alias and run the scalar loop
    if accumulate:
        for i in range(x.shape[0]):
            ai, gi = _activation(g[i] + w * x[i], code)
            a[i] = ai
            g[i] = gi
            yhat0[i] += w2 * ai
    else:
        for i in range(x.shape[0]):
            ai, gi = _activation(bias + w * x[i], code)
            a[i] = ai
            g[i] = gi
            yhat0[i] += w2 * ai


@njit(**_JIT)
def _forward_unit(XT, r0, T, W1, b1, W2, j, code, a, g, yhat):
    """z1_j = X_t W1[:, j] + b1[j], a = g(z1_j), g = g'(z1_j); yhat += a W2[j, :]."""
    d = XT.shape[0]
    k = W2.shape[1]
    bias = b1[j]
    if d > 1:
        # z1_j accumulates in g over the first d - 1 features, in feature
        # order, four features a pass to spare loads and stores of g
        w = W1[0, j]
        x = XT[0, r0:r0 + T]
        for i in range(T):
            g[i] = bias + w * x[i]
        l = 1
        while l + 4 <= d - 1:
            w_a, w_b, w_c, w_d = W1[l, j], W1[l + 1, j], W1[l + 2, j], W1[l + 3, j]
            x_a = XT[l, r0:r0 + T]
            x_b = XT[l + 1, r0:r0 + T]
            x_c = XT[l + 2, r0:r0 + T]
            x_d = XT[l + 3, r0:r0 + T]
            for i in range(T):
                g[i] = (((g[i] + w_a * x_a[i]) + w_b * x_b[i]) + w_c * x_c[i]) + w_d * x_d[i]
            l += 4
        while l < d - 1:
            w = W1[l, j]
            x = XT[l, r0:r0 + T]
            for i in range(T):
                g[i] += w * x[i]
            l += 1
    x = XT[d - 1, r0:r0 + T]
    w = W1[d - 1, j]
    w2 = W2[j, 0]
    accumulate = d > 1
    # one fused loop per activation, each with a constant code (see _activation)
    if code == TANH:
        _forward_loop(x, w, bias, accumulate, a, g, yhat[0], w2, TANH)
    elif code == SIGMOID:
        _forward_loop(x, w, bias, accumulate, a, g, yhat[0], w2, SIGMOID)
    elif code == RELU:
        _forward_loop(x, w, bias, accumulate, a, g, yhat[0], w2, RELU)
    else:
        _forward_loop(x, w, bias, accumulate, a, g, yhat[0], w2, IDENTITY)
    for c in range(1, k):
        w2 = W2[j, c]
        yhat_c = yhat[c]
        for i in range(T):
            yhat_c[i] += w2 * a[i]


@njit(**_JIT_ROW_SUM)
def _residual(yhat, y, w, scale):
    """yhat := dL/dyhat = (scale w_i) (yhat - y); returns
    (sum of w_i (yhat - y)^2, sum of dL/dyhat)."""
    loss = 0.0
    sum_D = 0.0
    for i in range(yhat.shape[0]):
        r = yhat[i] - y[i]
        wi = w[i]
        v = np.float64(r)
        loss += (np.float64(wi) * v) * v
        D = (scale * wi) * r
        yhat[i] = D
        sum_D += D
    return loss, sum_D


@njit(**_JIT_ROW_SUM)
def _backward_unit(XT, r0, T, W2, j, D, a, g, dz, grad_W1, grad_b1, grad_W2):
    """dz = (sum_c D[c] W2[j, c]) g, then the row sums
    grad_b1[j] += sum dz, grad_W1[l, j] += sum X_t[:, l] dz, grad_W2[j, c] += sum a D[c]."""
    d = XT.shape[0]
    k = W2.shape[1]
    x0 = XT[0, r0:r0 + T]
    D0 = D[0]
    w2 = W2[j, 0]
    sum_dz = 0.0
    sum_x0_dz = 0.0
    if k == 1:
        sum_a_D0 = 0.0
        if d == 1:
            for i in range(T):
                dzi = (w2 * D0[i]) * g[i]
                sum_dz += dzi
                sum_x0_dz += x0[i] * dzi
                sum_a_D0 += a[i] * D0[i]
        else:
            for i in range(T):
                dzi = (w2 * D0[i]) * g[i]
                dz[i] = dzi
                sum_dz += dzi
                sum_x0_dz += x0[i] * dzi
                sum_a_D0 += a[i] * D0[i]
        grad_W2[j, 0] += sum_a_D0
    else:
        for i in range(T):
            dz[i] = w2 * D0[i]
        for c in range(1, k):
            w2 = W2[j, c]
            Dc = D[c]
            for i in range(T):
                dz[i] += w2 * Dc[i]
        for i in range(T):
            dzi = dz[i] * g[i]
            dz[i] = dzi
            sum_dz += dzi
            sum_x0_dz += x0[i] * dzi
        for c in range(k):
            Dc = D[c]
            sum_a_Dc = 0.0
            for i in range(T):
                sum_a_Dc += a[i] * Dc[i]
            grad_W2[j, c] += sum_a_Dc
    grad_b1[j] += sum_dz
    grad_W1[0, j] += sum_x0_dz
    # the other features four at a time: one load of dz for four sums
    l = 1
    while l + 4 <= d:
        x_a = XT[l, r0:r0 + T]
        x_b = XT[l + 1, r0:r0 + T]
        x_c = XT[l + 2, r0:r0 + T]
        x_d = XT[l + 3, r0:r0 + T]
        sum_a = 0.0
        sum_b = 0.0
        sum_c = 0.0
        sum_d = 0.0
        for i in range(T):
            dzi = dz[i]
            sum_a += x_a[i] * dzi
            sum_b += x_b[i] * dzi
            sum_c += x_c[i] * dzi
            sum_d += x_d[i] * dzi
        grad_W1[l, j] += sum_a
        grad_W1[l + 1, j] += sum_b
        grad_W1[l + 2, j] += sum_c
        grad_W1[l + 3, j] += sum_d
        l += 4
    while l < d:
        x = XT[l, r0:r0 + T]
        sum_x_dz = 0.0
        for i in range(T):
            sum_x_dz += x[i] * dz[i]
        grad_W1[l, j] += sum_x_dz
        l += 1


@njit(**_JIT)
def _tile_explicit(XT, YT, w, r0, T, W1, b1, W2, b2, code, scale,
                   buf_G, buf_A, buf_R, buf_T, grad_W1, grad_b1, grad_W2, grad_b2):
    """One tile of T rows from r0 with explicit loops along the rows.

    Adds the tile's gradients to grad_*, returns its weighted sum of squared residuals.
    """
    h = W1.shape[1]
    k = W2.shape[1]
    G = buf_G[:h * T].reshape((h, T))        # g'(z1)
    A = buf_A[:h * T].reshape((h, T))        # a1
    R = buf_R[:k * T].reshape((k, T))        # yhat, then dL/dyhat
    dz = buf_T[:T]
    for c in range(k):
        R[c, :] = b2[c]
    for j in range(h):
        _forward_unit(XT, r0, T, W1, b1, W2, j, code, A[j], G[j], R)
    loss = 0.0
    w_t = w[r0:r0 + T]
    for c in range(k):
        loss_c, sum_D = _residual(R[c], YT[c, r0:r0 + T], w_t, scale)
        loss += loss_c
        grad_b2[c] += sum_D
    for j in range(h):
        _backward_unit(XT, r0, T, W2, j, R, A[j], G[j], dz, grad_W1, grad_b1, grad_W2)
    return loss


# ---------------------------------------------------------------- GEMM tiles

@njit(inline="always", **_JIT)
def _activate_units(G, A, b1, code):
    """A = g(G + b1), G := g'(G + b1) for a transposed tile: row j is hidden unit j."""
    for j in range(G.shape[0]):
        Gj = G[j]
        Aj = A[j]
        bj = b1[j]
        for i in range(Gj.shape[0]):
            Aj[i], Gj[i] = _activation(Gj[i] + bj, code)


@njit(inline="always", **_JIT)
def _activate_units_k1(G, b1, w2, R0, code):
    """k = 1, g' from a1 (_derivative_from_output): G := a1 = g(G + b1) in
    place, and R0 += a1^T w2 (yhat) in the same pass, unit by unit."""
    for j in range(G.shape[0]):
        Gj = G[j]
        bj = b1[j]
        w2j = w2[j]
        for i in range(Gj.shape[0]):
            a, _ = _activation(Gj[i] + bj, code)
            Gj[i] = a
            R0[i] += w2j * a


@njit(inline="always", **_JIT)
def _tile_forward_product(X_t, W1T, G):
    """G = (X_t W1)^T, h x T row-major, from W1T = W1^T (h x d): BLAS sees
    the column-major T x h product X_t W1 as X_t^T transposed times W1T."""
    h, d = W1T.shape
    T = X_t.shape[0]
    _gemm(_T, _N, T, h, d, X_t, d, W1T, d, 0.0, G, T)


@njit(inline="always", **_JIT)
def _tile_dW1_product(X_t, G, grad_W1T, first):
    """grad_W1T = (X_t^T G^T)^T (h x d) when ``first`` (beta = 0: no
    zeroing), else grad_W1T += it: BLAS sees the column-major d x h
    X_t^T G^T, as X_t (d x T) times G (T x h), neither transposed."""
    h, d = grad_W1T.shape
    T = X_t.shape[0]
    _gemm(_N, _N, d, h, T, X_t, d, G, T, 0.0 if first else 1.0, grad_W1T, d)


@njit(**_JIT_ROW_SUM)
def _backward_units_k1(G, A, D, w2, grad_b1, grad_w2):
    """k = 1, a transposed tile: G := dL/dz1 = (D w2_j) g' row by row (row j
    is hidden unit j), grad_b1[j] += its sum, grad_w2[j] += sum a1 D."""
    for j in range(G.shape[0]):
        Gj = G[j]
        Aj = A[j]
        w2j = w2[j]
        sum_dz = 0.0
        sum_a_D = 0.0
        for i in range(Gj.shape[0]):
            dz = (D[i] * w2j) * Gj[i]
            Gj[i] = dz
            sum_dz += dz
            sum_a_D += Aj[i] * D[i]
        grad_b1[j] += sum_dz
        grad_w2[j] += sum_a_D


@njit(inline="always", **_JIT_ROW_SUM)
def _backward_units_k1_loop(G, D, w2, grad_b1, grad_w2, code):
    for j in range(G.shape[0]):
        Gj = G[j]
        w2j = w2[j]
        sum_dz = 0.0
        sum_a_D = 0.0
        for i in range(Gj.shape[0]):
            a = Gj[i]
            dz = (D[i] * w2j) * _derivative64(a, code)
            Gj[i] = dz
            sum_dz += dz
            sum_a_D += a * D[i]
        grad_b1[j] += sum_dz
        grad_w2[j] += sum_a_D


@njit(**_JIT_ROW_SUM)
def _backward_units_k1_from_a(G, D, w2, grad_b1, grad_w2, code):
    """As _backward_units_k1 with G holding a1 (_activate_units_k1): g' from
    a1, so the tile needs one h x T buffer, read and written twice, where
    a1 and g' took two."""
    if code == TANH:
        _backward_units_k1_loop(G, D, w2, grad_b1, grad_w2, TANH)
    elif code == SIGMOID:
        _backward_units_k1_loop(G, D, w2, grad_b1, grad_w2, SIGMOID)
    elif code == RELU:
        _backward_units_k1_loop(G, D, w2, grad_b1, grad_w2, RELU)
    else:
        _backward_units_k1_loop(G, D, w2, grad_b1, grad_w2, IDENTITY)


@njit(**_JIT_ROW_SUM)
def _backward_units(G, A, grad_b1):
    """k > 1, a transposed tile: G := dL/dz1 = A g' (A holding dL/da1),
    grad_b1[j] += row j's sum."""
    for j in range(G.shape[0]):
        Gj = G[j]
        Aj = A[j]
        sum_dz = 0.0
        for i in range(Gj.shape[0]):
            dz = Aj[i] * Gj[i]
            Gj[i] = dz
            sum_dz += dz
        grad_b1[j] += sum_dz


@njit(**_JIT)
def _tile_gemm(X, Y, w, r0, T, W1T, b1, W2, b2, code, scale, first,
               buf_G, buf_A, buf_R, grad_W1T, grad_b1, grad_W2, grad_b2):
    """One tile of T rows from r0: the products are BLAS GEMMs, the
    elementwise work is fused around them, on the tile transposed (row j of
    G, A and R is hidden unit or output j), so that every loop runs along
    the T rows. W1 and its gradient are transposed too (W1T, grad_W1T:
    h x d): with these layouts OpenBLAS packs its operands with cheaper
    copies (benches/RESULTS.md).

    Adds the tile's gradients to grad_*, returns its weighted sum of squared
    residuals; the chunk's first tile writes grad_W1T instead (beta = 0: no
    zeroing of the h x d accumulator).
    """
    h, d = W1T.shape
    k = W2.shape[1]
    X_t = X[r0:r0 + T]
    G = buf_G[:h * T].reshape((h, T))        # z1 - b1, then g'(z1), then dL/dz1
    A = buf_A[:h * T].reshape((h, T))        # a1, then (k > 1) dL/da1
    R = buf_R[:k * T].reshape((k, T))        # yhat, then dL/dyhat
    _tile_forward_product(X_t, W1T, G)
    if k == 1 and _derivative_from_output(W1T):
        # one buffer: G holds z1 - b1, then a1, then dL/dz1
        R0 = R[0]
        R0[:] = b2[0]
        w2 = W2.reshape(-1)
        if code == TANH:
            _activate_units_k1(G, b1, w2, R0, TANH)
        elif code == SIGMOID:
            _activate_units_k1(G, b1, w2, R0, SIGMOID)
        elif code == RELU:
            _activate_units_k1(G, b1, w2, R0, RELU)
        else:
            _activate_units_k1(G, b1, w2, R0, IDENTITY)
        loss, sum_D = _residual(R0, Y[r0:r0 + T, 0], w[r0:r0 + T], scale)
        grad_b2[0] += sum_D
        _backward_units_k1_from_a(G, R0, w2, grad_b1, grad_W2.reshape(-1), code)
        _tile_dW1_product(X_t, G, grad_W1T, first)
        return loss
    if code == TANH:
        _activate_units(G, A, b1, TANH)
    elif code == SIGMOID:
        _activate_units(G, A, b1, SIGMOID)
    elif code == RELU:
        _activate_units(G, A, b1, RELU)
    else:
        _activate_units(G, A, b1, IDENTITY)
    for c in range(k):
        R[c, :] = b2[c]
    if k == 1:
        R0 = R[0]
        for j in range(h):
            w2j = W2[j, 0]
            Aj = A[j]
            for i in range(T):
                R0[i] += w2j * Aj[i]
    else:
        _gemm(_N, _T, T, k, h, A, T, W2, k, 1.0, R, T)       # R += (A^T W2)^T
    loss = 0.0
    w_t = w[r0:r0 + T]
    for c in range(k):
        loss_c, sum_D = _residual(R[c], Y[r0:r0 + T, c], w_t, scale)
        loss += loss_c
        grad_b2[c] += sum_D
    if k == 1:
        _backward_units_k1(G, A, R[0], W2.reshape(-1), grad_b1, grad_W2.reshape(-1))
    else:
        _gemm(_T, _N, k, h, T, R, T, A, T, 1.0, grad_W2, k)   # grad_W2 += A R^T
        _gemm(_N, _N, T, h, k, R, T, W2, k, 0.0, A, T)        # A = (R^T W2^T)^T = W2 R
        _backward_units(G, A, grad_b1)
    _tile_dW1_product(X_t, G, grad_W1T, first)
    return loss


# ---------------------------------------------------------------- chunks

@njit(**_JIT)
def _chunk(c, row0, m, chunk_rows, tile_rows, use_gemm, X, Y, XT, YT, w, source,
           W1, b1, W2, b2, code, scale, buf_G, buf_A, buf_R, buf_T,
           chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss):
    """Chunk c of the batch of m rows from row0: its loss and gradients into
    its own accumulators, tile by tile. With a shuffled batch (source =
    (X_all, Y_all, order, X_batch, Y_batch, XT, YT), order not empty) the
    chunk first gathers its own rows of the batch into the batch buffers
    (X_batch, Y_batch: the X, Y here; or XT, YT), in parallel with the
    others. The buffers come through ``source`` as well: X and Y here may be
    the caller's read-only arrays."""
    begin = row0 + c * chunk_rows
    end = min(row0 + m, begin + chunk_rows)
    X_all, Y_all, order, X_batch, Y_batch, XT_batch, YT_batch = source
    if order.shape[0] > 0:
        if use_gemm:
            _gather_rows(X_all, Y_all, order, begin, end, X_batch, Y_batch)
        else:
            _gather_columns(X_all, Y_all, order, begin, end, XT_batch, YT_batch)
    grad_W1 = chunk_W1[c]
    grad_b1 = chunk_b1[c]
    grad_W2 = chunk_W2[c]
    grad_b2 = chunk_b2[c]
    if not use_gemm:
        grad_W1[:] = 0                       # (the GEMM tiles write it first)
    grad_b1[:] = 0
    grad_W2[:] = 0
    grad_b2[:] = 0
    loss = 0.0
    for r0 in range(begin, end, tile_rows):
        T = min(tile_rows, end - r0)
        if use_gemm:
            loss += _tile_gemm(X, Y, w, r0, T, W1, b1, W2, b2, code, scale, r0 == begin,
                               buf_G, buf_A, buf_R,
                               grad_W1, grad_b1, grad_W2, grad_b2)
        else:
            loss += _tile_explicit(XT, YT, w, r0, T, W1, b1, W2, b2, code, scale,
                                   buf_G, buf_A, buf_R, buf_T,
                                   grad_W1, grad_b1, grad_W2, grad_b2)
    chunk_loss[c] = loss


@njit(parallel=True, **_JIT)
def _chunks_parallel(n_workers, n_chunks, row0, m, chunk_rows, tile_rows, use_gemm,
                     X, Y, XT, YT, w, source, W1, b1, W2, b2, code, scale,
                     buf_G, buf_A, buf_R, buf_T,
                     chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss):
    # one prange iteration per worker; a worker owns its buffers and a
    # contiguous run of chunks (a static schedule)
    for wk in prange(n_workers):
        for c in range(wk * n_chunks // n_workers, (wk + 1) * n_chunks // n_workers):
            _chunk(c, row0, m, chunk_rows, tile_rows, use_gemm, X, Y, XT, YT, w, source,
                   W1, b1, W2, b2, code, scale,
                   buf_G[wk], buf_A[wk], buf_R[wk], buf_T[wk],
                   chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss)


@njit(parallel=True, **_JIT)
def products_only(X, W1, n_workers, buf_G, chunk_W1):
    """The two d x h products of one full-batch epoch and nothing else, in
    the chunks and tiles of the GEMM path (G = X_t W1, then dW1 (+)= X_t^T G
    for each tile): the least time that path's epoch could take, which
    ``shallownet.bench`` times beside the kernels. buf_G is
    (n_workers, tile_rows * h) and chunk_W1 (n_chunks, d, h), from _plan.
    W1 is transposed first, as a run of the kernels does once."""
    n, d = X.shape
    h = W1.shape[1]
    n_chunks, chunk_rows, tile_rows, _, _ = _plan(n, d, h, 1)
    W1T = np.ascontiguousarray(W1.T)
    for wk in prange(n_workers):
        for c in range(wk * n_chunks // n_workers, (wk + 1) * n_chunks // n_workers):
            begin = c * chunk_rows
            end = min(n, begin + chunk_rows)
            for r0 in range(begin, end, tile_rows):
                T = min(tile_rows, end - r0)
                X_t = X[r0:r0 + T]
                G = buf_G[wk, :T * h].reshape((h, T))
                _tile_forward_product(X_t, W1T, G)
                _tile_dW1_product(X_t, G, chunk_W1[c].reshape((h, d)), r0 == begin)


@njit(**_JIT)
def _plan(n, d, h, k):
    """(n_chunks, chunk_rows, tile_rows, use_gemm, max_tile_rows) for a batch
    of n rows: fixed by the shapes alone. n_chunks is monotone in n, and
    tile_rows <= max_tile_rows, which buffers for n rows hold."""
    use_gemm = (h >= GEMM_MIN_HIDDEN and d * h >= GEMM_MIN_DH) or d * h >= GEMM_ALWAYS_DH
    min_rows = max(CHUNK_MIN_OPS // (h * (2 * (d + k) + 33)), 1)
    if d * h >= GEMM_TALL_DH:
        min_rows = max(min_rows, GEMM_MIN_CHUNK_ROWS)
    if use_gemm:
        tile_rows = GEMM_TILE_ROWS
    else:
        tile_rows = SMALL_TILE_BYTES // (8 * (2 * h + k + d))
        tile_rows = min(max(tile_rows - tile_rows % 8, SMALL_TILE_MIN_ROWS), SMALL_TILE_MAX_ROWS)
    chunks = min(n // min_rows, MAX_CHUNKS)
    n_chunks = 1
    while 2 * n_chunks <= chunks:
        n_chunks *= 2
    chunk_rows = max((n + n_chunks - 1) // n_chunks, 1)
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    return n_chunks, chunk_rows, min(tile_rows, chunk_rows), use_gemm, max(min(tile_rows, n), 1)


# Every buffer of a run of calls lives in two flat arrays allocated once per
# fit (sized by ``workspace_sizes``): one of the parameters' dtype, one of
# float64. Each call carves the same views out of them again (``_carve``),
# which costs nanoseconds, where allocating ~25 arrays cost microseconds at
# every return from compiled code (every callback). Regions start on 64-byte
# boundaries (relative to the buffer's start, which the caller aligns).
_ALIGN_BYTES = 64


@njit(inline="always", **_JIT)
def _next(buf, at, size):
    """The offset after a region of ``size`` elements at ``at``, aligned."""
    step = max(_ALIGN_BYTES // buf.itemsize, 1)
    end = at + size
    return end + (-end) % step


@njit(inline="always", **_JIT)
def _v1(buf, at, a):
    """The region of shape (a,) at offset ``at`` and the offset after it; an
    empty view when ``buf`` is too short (only ``workspace_sizes`` carves
    such a buffer: it reads the offsets, never the views)."""
    size = a
    view = buf[at:at + size] if at + size <= buf.shape[0] else buf[0:0]
    return view, _next(buf, at, size)


@njit(inline="always", **_JIT)
def _v2(buf, at, a, b):
    size = a * b
    if at + size <= buf.shape[0]:
        view = buf[at:at + size].reshape((a, b))
    else:
        view = buf[0:0].reshape((0, 0))
    return view, _next(buf, at, size)


@njit(inline="always", **_JIT)
def _v3(buf, at, a, b, c):
    size = a * b * c
    if at + size <= buf.shape[0]:
        view = buf[at:at + size].reshape((a, b, c))
    else:
        view = buf[0:0].reshape((0, 0, 0))
    return view, _next(buf, at, size)


@njit(**_JIT)
def _carve(buf, buf64, n, d, h, k, rows, n_threads, gather):
    """The views of a run's buffers, the same every call for the same
    arguments: for batches of at most ``rows`` rows the per-worker tile
    buffers and per-chunk accumulators; the transposed X and Y of the
    explicit loops (all of X, or with ``gather`` a batch's rows); the
    row-major batch buffers of the GEMM path with ``gather``; the GEMM
    path's transposed W1 and moments; the gathered weights; the four
    gradients (dW1 transposed on the GEMM path, as the chunks' dW1). In
    ``buf64``: the chunks' losses, each in-order batch's weight sum, and
    whether every sample weight is 1.
    Also returns the sizes the views need, (elements of buf, of buf64)."""
    n_chunks, _, _, use_gemm, tile_rows = _plan(rows, d, h, k)
    n_workers = max(1, min(n_threads, n_chunks))
    n_batches = (n + rows - 1) // rows
    if use_gemm:
        xt_cols = 0
        batch_rows = rows if gather else 0
        buf_t = 0
    else:
        # the explicit loops run along rows: X transposed, all of it once per
        # fit, or each gathered batch straight into a transposed buffer
        xt_cols = rows if gather else n
        batch_rows, buf_t = 0, tile_rows
    at = 0
    XT, at = _v2(buf, at, d if xt_cols else 0, xt_cols)
    YT, at = _v2(buf, at, k if xt_cols else 0, xt_cols)
    X_batch, at = _v2(buf, at, batch_rows, d if batch_rows else 0)
    Y_batch, at = _v2(buf, at, batch_rows, k if batch_rows else 0)
    w_batch, at = _v1(buf, at, rows if gather else 0)
    buf_T, at = _v2(buf, at, n_workers, buf_t)
    # the GEMM path holds W1, its gradients and its optimizer moments
    # transposed (h x d) within a call (train, loss_and_gradients)
    r1, c1 = (h, d) if use_gemm else (d, h)
    t1, u1 = (h, d) if use_gemm else (0, 0)
    W1T, at = _v2(buf, at, t1, u1)
    mW1T, at = _v2(buf, at, t1, u1)
    vW1T, at = _v2(buf, at, t1, u1)
    buf_G, at = _v2(buf, at, n_workers, tile_rows * h)
    buf_A, at = _v2(buf, at, n_workers, tile_rows * h)
    buf_R, at = _v2(buf, at, n_workers, tile_rows * k)
    chunk_W1, at = _v3(buf, at, n_chunks, r1, c1)
    chunk_b1, at = _v2(buf, at, n_chunks, h)
    chunk_W2, at = _v3(buf, at, n_chunks, h, k)
    chunk_b2, at = _v2(buf, at, n_chunks, k)
    grad_W1, at = _v2(buf, at, r1, c1)
    grad_b1, at = _v1(buf, at, h)
    grad_W2, at = _v2(buf, at, h, k)
    grad_b2, at = _v1(buf, at, k)
    at64 = 0
    chunk_loss, at64 = _v1(buf64, at64, n_chunks)
    batch_weight, at64 = _v1(buf64, at64, 0 if gather else n_batches)
    unit_weights, at64 = _v1(buf64, at64, 1)
    workspace = (n_workers, use_gemm, XT, YT, X_batch, Y_batch, w_batch,
                 (buf_G, buf_A, buf_R, buf_T),
                 (chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss), (W1T, mW1T, vW1T))
    return (workspace, (grad_W1, grad_b1, grad_W2, grad_b2), batch_weight, unit_weights,
            (at, at64))


@njit(**_JIT)
def workspace_sizes(X, Y, W1, rows, n_threads, gather):
    """(elements of the parameters' dtype, float64 elements) of the two
    buffers a run of calls with these arguments carves (``_carve``)."""
    n, d = X.shape
    return _carve(np.empty(0, W1.dtype), np.empty(0, np.float64), n, d, W1.shape[1],
                  Y.shape[1], rows, n_threads, gather)[4]


@njit(**_JIT)
def prepare(X, Y, w, W1, rows, n_threads, gather, buf, buf64):
    """Fill the parts of a run's buffers that stay the same across its calls:
    the transposed X and Y (rows in order, explicit loops), each in-order
    batch's weight sum, and the unit-weights flag."""
    n, d = X.shape
    h = W1.shape[1]
    k = Y.shape[1]
    workspace, _, batch_weight, unit_weights, _ = _carve(
        buf, buf64, n, d, h, k, rows, n_threads, gather)
    XT, YT = workspace[2], workspace[3]
    if not gather and XT.shape[1] > 0:
        XT[:, :] = X.T
        YT[:, :] = Y.T
    for batch in range(batch_weight.shape[0]):
        start = batch * rows
        batch_weight[batch] = _weight_sum(w[start:min(n, start + rows)])
    unit_weights[0] = 1.0 if _all_ones(w) else 0.0


@njit(**_JIT_ROW_SUM)
def _sum_squares(a):
    """sum a^2 over all of a, in float64."""
    flat = a.reshape(-1)
    s = 0.0
    for i in range(flat.shape[0]):
        v = np.float64(flat[i])
        s += v * v
    return s


@njit(**_JIT_EXACT)
def _add_scaled(grad, s, p):
    """grad += s * p (rounded as NumPy rounds it: no FMA)."""
    grad_flat = grad.reshape(-1)
    p_flat = p.reshape(-1)
    for i in range(grad_flat.shape[0]):
        grad_flat[i] += s * p_flat[i]


@njit(**_JIT)
def _gradients(X, Y, XT, YT, w, source, row0, m, weight, W1, b1, W2, b2, code, alpha,
               workspace, grad_W1, grad_b1, grad_W2, grad_b2):
    """L_B and its gradients (into grad_*) at the current parameters for the
    batch of the m rows from row0 of (X, Y, w) (GEMM path) or of (XT, YT, w)
    (explicit path), whose weights sum to ``weight`` > 0; returns L_B. A
    shuffled batch's chunks first gather its rows there from source =
    (X_all, Y_all, order, X_batch, Y_batch, XT, YT); rows in order pass an
    empty order. W1 and grad_W1 are in the path's layout: d x h on the
    explicit path, transposed (h x d) on the GEMM path."""
    (max_workers, _, _, _, _, _, _, buffers, chunks, _) = workspace
    buf_G, buf_A, buf_R, buf_T = buffers
    chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss = chunks
    h = b1.shape[0]
    d = W1.size // h
    k = W2.shape[1]
    n_chunks, chunk_rows, tile_rows, use_gemm, _ = _plan(m, d, h, k)
    # dL/dyhat_i = scale w_i (yhat_i - y_i), scale = 2 / W_B in the parameters' dtype
    scale = _like(2.0 / weight, W1)
    if n_chunks == 1:
        # one chunk: no parallel region (its start-up would dominate small
        # batches). Chunk n_chunks - 1 = 0, not the literal 0: a literal
        # argument would compile _chunk and its callees a second time
        _chunk(n_chunks - 1, row0, m, chunk_rows, tile_rows, use_gemm, X, Y, XT, YT, w, source,
               W1, b1, W2, b2, code, scale,
               buf_G[0], buf_A[0], buf_R[0], buf_T[0],
               chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss)
    else:
        _chunks_parallel(min(max_workers, n_chunks), n_chunks, row0, m, chunk_rows, tile_rows,
                         use_gemm, X, Y, XT, YT, w, source, W1, b1, W2, b2, code, scale,
                         buf_G, buf_A, buf_R, buf_T,
                         chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss)
    # reduce in chunk order: the same sums whatever the number of workers
    grad_W1[:, :] = chunk_W1[0]
    grad_b1[:] = chunk_b1[0]
    grad_W2[:, :] = chunk_W2[0]
    grad_b2[:] = chunk_b2[0]
    loss = chunk_loss[0]
    for c in range(1, n_chunks):
        grad_W1 += chunk_W1[c]
        grad_b1 += chunk_b1[c]
        grad_W2 += chunk_W2[c]
        grad_b2 += chunk_b2[c]
        loss += chunk_loss[c]
    if alpha != 0.0:
        # the L2 penalty (alpha / W_B) (|W1|^2 + |W2|^2) and its gradients
        loss += alpha * (_sum_squares(W1) + _sum_squares(W2))
        s = _like(2.0 * alpha / weight, W1)
        _add_scaled(grad_W1, s, W1)
        _add_scaled(grad_W2, s, W2)
    return loss / weight


# ---------------------------------------------------------------- batches

@njit(**_JIT_ROW_SUM)
def _weight_sum(w):
    """sum w in float64."""
    s = 0.0
    for i in range(w.shape[0]):
        s += np.float64(w[i])
    return s


@njit(inline="always", **_JIT)
def _no_order():
    """The order of a batch of rows in order: empty, and typed as a row slice
    of ``orders`` so that both kinds of batch share one compiled _gradients."""
    return np.empty((1, 0), np.int64)[0, 0:0]


@njit(**_JIT)
def _all_ones(w):
    for i in range(w.shape[0]):
        if w[i] != 1:
            return False
    return True


@njit(**_JIT_ROW_SUM)
def _gather_weights(w, rows, w_batch):
    """w_batch[i] = w[rows[i]]; returns their sum in float64."""
    m = rows.shape[0]
    s = 0.0
    for i in range(m):
        if i + PREFETCH_ROWS < m:
            _prefetch(w, rows[i + PREFETCH_ROWS])
        wi = w[rows[i]]
        w_batch[i] = wi
        s += np.float64(wi)
    return s


@njit(inline="always", **_JIT)
def _prefetch_row(X, Y, r):
    """Ask for the cache lines of row r of X (its first and last element) and of Y."""
    d = X.shape[1]
    k = Y.shape[1]
    _prefetch(X, r * d)
    _prefetch(X, r * d + d - 1)
    _prefetch(Y, r * k)


@njit(**_JIT)
def _gather_rows(X, Y, rows, begin, end, X_batch, Y_batch):
    """X_batch[i] = X[rows[i]], Y_batch[i] = Y[rows[i]] for i in [begin, end)
    (the GEMM path's layout)."""
    d = X.shape[1]
    k = Y.shape[1]
    for i in range(begin, end):
        if i + PREFETCH_ROWS < end:
            _prefetch_row(X, Y, rows[i + PREFETCH_ROWS])
        r = rows[i]
        for l in range(d):
            X_batch[i, l] = X[r, l]
        for c in range(k):
            Y_batch[i, c] = Y[r, c]


@njit(**_JIT)
def _gather_columns(X, Y, rows, begin, end, XT, YT):
    """XT[:, i] = X[rows[i]], YT[:, i] = Y[rows[i]] for i in [begin, end)
    (the explicit loops' layout)."""
    d = X.shape[1]
    k = Y.shape[1]
    for i in range(begin, end):
        if i + PREFETCH_ROWS < end:
            _prefetch_row(X, Y, rows[i + PREFETCH_ROWS])
        r = rows[i]
        for l in range(d):
            XT[l, i] = X[r, l]
        for c in range(k):
            YT[c, i] = Y[r, c]


# ---------------------------------------------------------------- steps
# Elementwise, in the order of operations of the reference's _step and in the
# parameters' dtype (every scalar is converted to it first, as NumPy does with
# a Python float); no fastmath, so no FMA: with the same gradient the update
# is rounded exactly as NumPy rounds it.

@njit(**_JIT_EXACT)
def _step_sgd(p, g, lr):
    """p -= lr g."""
    p_flat = p.reshape(-1)
    g_flat = g.reshape(-1)
    for i in range(p_flat.shape[0]):
        p_flat[i] -= lr * g_flat[i]


@njit(**_JIT_EXACT)
def _step_momentum(p, g, velocity, mu, lr, nesterov):
    """velocity = mu velocity - lr g; p += velocity, or with Nesterov p += mu velocity - lr g."""
    p_flat = p.reshape(-1)
    g_flat = g.reshape(-1)
    v_flat = velocity.reshape(-1)
    if nesterov:
        for i in range(p_flat.shape[0]):
            vi = v_flat[i] * mu
            vi = vi - lr * g_flat[i]
            v_flat[i] = vi
            p_flat[i] += mu * vi - lr * g_flat[i]
    else:
        for i in range(p_flat.shape[0]):
            vi = v_flat[i] * mu
            vi = vi - lr * g_flat[i]
            v_flat[i] = vi
            p_flat[i] += vi


@njit(**_JIT_EXACT)
def _step_adam(p, g, m, v, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
               bias1, bias2, epsilon):
    """m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
    p -= lr (m / bias1) / (sqrt(v / bias2) + epsilon)."""
    p_flat = p.reshape(-1)
    g_flat = g.reshape(-1)
    m_flat = m.reshape(-1)
    v_flat = v.reshape(-1)
    for i in range(p_flat.shape[0]):
        gi = g_flat[i]
        mi = m_flat[i] * beta1
        mi = mi + one_minus_beta1 * gi
        vi = v_flat[i] * beta2
        vi = vi + (one_minus_beta2 * gi) * gi
        m_flat[i] = mi
        v_flat[i] = vi
        p_flat[i] -= lr * (mi / bias1) / (np.sqrt(vi / bias2) + epsilon)


@njit(**_JIT_EXACT)
def _step_adam_folded(p, g, m, v, step, beta1, one_minus_beta1, beta2, one_minus_beta2,
                      epsilon):
    """As _step_adam, epsilon added to sqrt(v) before the bias correction,
    which the float64 step = lr sqrt(bias2) / bias1 carries:
    p -= step m / (sqrt(v) + epsilon). The quotient is formed in float64 and
    rounded once into p, as NumPy does with a float64 scalar step."""
    p_flat = p.reshape(-1)
    g_flat = g.reshape(-1)
    m_flat = m.reshape(-1)
    v_flat = v.reshape(-1)
    for i in range(p_flat.shape[0]):
        gi = g_flat[i]
        mi = m_flat[i] * beta1
        mi = mi + one_minus_beta1 * gi
        vi = v_flat[i] * beta2
        vi = vi + (one_minus_beta2 * gi) * gi
        m_flat[i] = mi
        v_flat[i] = vi
        p_flat[i] -= (step * np.float64(mi)) / np.float64(np.sqrt(vi) + epsilon)


@njit(**_JIT_EXACT)
def _learning_rate(learning_rate, epoch, schedule_scale, power_t):
    """learning_rate / (epoch schedule_scale + 1) ** power_t in float64,
    rounded as the reference rounds it (no FMA)."""
    return learning_rate / math.pow(np.float64(epoch) * schedule_scale + 1.0, power_t)


@njit(**_JIT)
def _step(W1, b1, W2, b2, grad_W1, grad_b1, grad_W2, grad_b2,
          mW1, mb1, mW2, mb2, vW1, vb1, vW2, vb2, t, optimizer, lr, momentum, nesterov,
          beta1, beta2, epsilon, epsilon_first):
    """One optimizer update of every parameter, t = the steps taken counting
    this one (float64 scalars; converted to the parameters' dtype here)."""
    if optimizer == ADAM and epsilon_first:
        bias1 = 1.0 - math.pow(beta1, np.float64(t))
        bias2 = 1.0 - math.pow(beta2, np.float64(t))
        step = np.float64(lr) * math.sqrt(bias2) / bias1
        b1_, c1 = _like(beta1, W1), _like(1.0 - beta1, W1)
        b2_, c2 = _like(beta2, W1), _like(1.0 - beta2, W1)
        eps = _like(epsilon, W1)
        _step_adam_folded(W1, grad_W1, mW1, vW1, step, b1_, c1, b2_, c2, eps)
        _step_adam_folded(b1, grad_b1, mb1, vb1, step, b1_, c1, b2_, c2, eps)
        _step_adam_folded(W2, grad_W2, mW2, vW2, step, b1_, c1, b2_, c2, eps)
        _step_adam_folded(b2, grad_b2, mb2, vb2, step, b1_, c1, b2_, c2, eps)
    elif optimizer == ADAM:
        bias1 = _like(1.0 - math.pow(beta1, np.float64(t)), W1)
        bias2 = _like(1.0 - math.pow(beta2, np.float64(t)), W1)
        b1_, c1 = _like(beta1, W1), _like(1.0 - beta1, W1)
        b2_, c2 = _like(beta2, W1), _like(1.0 - beta2, W1)
        eps = _like(epsilon, W1)
        _step_adam(W1, grad_W1, mW1, vW1, lr, b1_, c1, b2_, c2, bias1, bias2, eps)
        _step_adam(b1, grad_b1, mb1, vb1, lr, b1_, c1, b2_, c2, bias1, bias2, eps)
        _step_adam(W2, grad_W2, mW2, vW2, lr, b1_, c1, b2_, c2, bias1, bias2, eps)
        _step_adam(b2, grad_b2, mb2, vb2, lr, b1_, c1, b2_, c2, bias1, bias2, eps)
    elif momentum != 0.0:
        mu = _like(momentum, W1)
        _step_momentum(W1, grad_W1, mW1, mu, lr, nesterov)
        _step_momentum(b1, grad_b1, mb1, mu, lr, nesterov)
        _step_momentum(W2, grad_W2, mW2, mu, lr, nesterov)
        _step_momentum(b2, grad_b2, mb2, mu, lr, nesterov)
    else:
        _step_sgd(W1, grad_W1, lr)
        _step_sgd(b1, grad_b1, lr)
        _step_sgd(W2, grad_W2, lr)
        _step_sgd(b2, grad_b2, lr)


# ---------------------------------------------------------------- entry points

@njit(**_JIT)
def train(X, Y, w, W1, b1, W2, b2, mW1, mb1, mW2, mb2, vW1, vb1, vW2, vb2, t,
          code, optimizer, learning_rate, power_t, momentum, nesterov, beta1, beta2, epsilon,
          alpha, batch_size, schedule_scale, epsilon_first, epoch0, gather, orders, losses,
          start, count, n_threads, buf, buf64):
    """Run ``count`` epochs on W1, b1, W2, b2 and the optimizer state (m*, v*,
    t: int64 (1,) steps taken) in place; see the header. ``buf`` and
    ``buf64`` are the run's buffers (``workspace_sizes``), filled by
    ``prepare`` for these X, Y, w and settings.

    gather: shuffled batches, in ``orders``, int64 (count, m) row orders,
    1 <= m <= n (an epoch walks those m rows); else all rows in order
    (``orders`` is then an empty (0, 0) array). Epoch e steps with
    learning_rate / (e schedule_scale + 1) ** power_t; epsilon_first: Adam
    adds epsilon to sqrt(v) before the bias correction (_step_adam_folded).
    losses[start + e] receives the weighted mean of epoch e's batch losses;
    returns the number of finished epochs (stops at the first batch loss that
    is not finite, after writing it to losses).
    """
    n = X.shape[0]
    d = X.shape[1]
    h = W1.shape[1]
    k = Y.shape[1]
    rows = max(1, min(batch_size, n))
    # an epoch's rows: all n in order, or the m rows of its order
    walked = orders.shape[1] if gather else n
    n_batches = (walked + rows - 1) // rows
    workspace, grads, batch_weight, unit, sizes = _carve(
        buf, buf64, n, d, h, k, rows, n_threads, gather)
    if sizes[0] > buf.shape[0] or sizes[1] > buf64.shape[0]:
        raise ValueError("shallownet: the Numba kernel's buffers are too small for this run")
    XT, YT, X_batch, Y_batch, w_batch = workspace[2:7]
    grad_W1, grad_b1, grad_W2, grad_b2 = grads
    use_gemm = workspace[1]
    W1T, mW1T, vW1T = workspace[9]
    moments = 2 if optimizer == ADAM else 1 if momentum != 0.0 else 0
    if use_gemm:
        # the GEMM path's layout for the whole call, undone before returning
        _copy_transposed(moments, W1T, mW1T, vW1T, W1, mW1, vW1)
        P1, mP1, vP1 = W1T, mW1T, vW1T
    else:
        P1, mP1, vP1 = W1, mW1, vW1
    # unit weights: a shuffled batch's weights are all ones, set once here
    # rather than gathered (200 random reads a batch) before every batch
    unit_weights = gather and unit[0] == 1.0
    if unit_weights:
        w_batch[:] = 1
    no_order = _no_order()
    for epoch in range(count):
        lr = _like(_learning_rate(learning_rate, epoch0 + epoch, schedule_scale, power_t), W1)
        epoch_loss = 0.0
        epoch_weight = 0.0
        for batch in range(n_batches):
            first = batch * rows
            m = min(rows, walked - first)
            # a gathered batch starts at row 0 of its buffers (one int64 for
            # both cases: a literal 0 would compile every callee a second time)
            row0 = 0 if gather else first
            if gather:
                order = orders[epoch, first:first + m]
                if unit_weights:
                    weight = np.float64(m)           # the exact sum of m ones
                else:
                    weight = _gather_weights(w, order, w_batch)
                    if weight == 0.0:
                        continue
                loss = _gradients(X_batch, Y_batch, XT, YT, w_batch,
                                  (X, Y, order, X_batch, Y_batch, XT, YT), row0, m, weight,
                                  P1, b1, W2, b2, code, alpha, workspace,
                                  grad_W1, grad_b1, grad_W2, grad_b2)
            else:
                weight = batch_weight[batch]
                if weight == 0.0:
                    continue
                loss = _gradients(X, Y, XT, YT, w, (X, Y, no_order, X_batch, Y_batch, XT, YT),
                                  row0, m, weight, P1, b1, W2, b2, code, alpha, workspace,
                                  grad_W1, grad_b1, grad_W2, grad_b2)
            if not np.isfinite(loss):
                losses[start + epoch] = loss
                if use_gemm:
                    _copy_transposed(moments, W1, mW1, vW1, W1T, mW1T, vW1T)
                return epoch
            epoch_loss += loss * weight
            epoch_weight += weight
            t[0] += 1
            _step(P1, b1, W2, b2, grad_W1, grad_b1, grad_W2, grad_b2,
                  mP1, mb1, mW2, mb2, vP1, vb1, vW2, vb2, t[0], optimizer, lr, momentum,
                  nesterov, beta1, beta2, epsilon, epsilon_first)
        losses[start + epoch] = epoch_loss / epoch_weight
    if use_gemm:
        _copy_transposed(moments, W1, mW1, vW1, W1T, mW1T, vW1T)
    return count


@njit(**_JIT)
def _copy_transposed(moments, W1, mW1, vW1, W1_from, mW1_from, vW1_from):
    """W1 = W1_from^T, and as much of the optimizer's moments as it keeps
    (``moments``: 0, 1 or 2): into the GEMM path's layout or back."""
    W1[:, :] = W1_from.T
    if moments >= 1:
        mW1[:, :] = mW1_from.T
    if moments == 2:
        vW1[:, :] = vW1_from.T


@njit(**_JIT)
def loss_and_gradients(X, Y, w, W1, b1, W2, b2, code, alpha, n_threads,
                       grad_W1, grad_b1, grad_W2, grad_b2):
    """L over all rows at the parameters; its gradients into grad_*."""
    n, d = X.shape
    # a run of one call: the buffers of one batch of all n rows, in order
    sizes = workspace_sizes(X, Y, W1, n, n_threads, False)
    buf = np.empty(sizes[0], W1.dtype)
    buf64 = np.empty(sizes[1], np.float64)
    prepare(X, Y, w, W1, n, n_threads, False, buf, buf64)
    workspace, grads, batch_weight, _, _ = _carve(buf, buf64, n, d, W1.shape[1], Y.shape[1],
                                                  n, n_threads, False)
    XT, YT, X_batch, Y_batch = workspace[2:6]
    no_order = _no_order()
    source = (X, Y, no_order, X_batch, Y_batch, XT, YT)
    if not workspace[1]:
        return _gradients(X, Y, XT, YT, w, source, n - n, n, batch_weight[0],
                          W1, b1, W2, b2, code, alpha, workspace,
                          grad_W1, grad_b1, grad_W2, grad_b2)
    # the GEMM path's layout: W1 and its gradient transposed
    W1T = workspace[9][0]
    grad_W1T = grads[0]
    W1T[:, :] = W1.T
    loss = _gradients(X, Y, XT, YT, w, source, n - n, n, batch_weight[0],
                      W1T, b1, W2, b2, code, alpha, workspace,
                      grad_W1T, grad_b1, grad_W2, grad_b2)
    grad_W1[:, :] = grad_W1T.T
    return loss
