# Numba kernels of shallownet (design: docs/kernels.md).
#
# Computes full-batch gradient descent for yhat = g(X W1 + b1) W2 + b2 on
# L = (1/n) sum_{i,c} (yhat_ic - y_ic)^2: each epoch the loss and its four
# gradients, then p := p - learning_rate * dL/dp.
# Assumes validated input: X (n, d) and Y (n, k) C-contiguous, finite, float32
# or float64, possibly read-only; W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)
# C-contiguous, writable, of X's dtype; loss_curve float64 (epochs,).
# Writes the parameters in place and loss_curve[:epochs done]; never raises.
#
# Flags. fastmath 'contract' only (a*b + c may become an FMA: deterministic),
# except for the functions that sum over rows, which also allow 'reassoc' so
# that LLVM keeps vector partial sums: a fixed order for a compiled function,
# the same run to run and for every thread count (chunks are fixed by n and
# reduced in chunk order). error_model='numpy' drops the ZeroDivisionError
# check on each division, a branch that would stop the loops vectorising.

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

IDENTITY, RELU, TANH, SIGMOID = 0, 1, 2, 3

_FASTMATH = {"contract"}
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
_JIT_ROW_SUM = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})

# Chunks: fixed by n alone (docs/kernels.md).
MIN_CHUNK_ROWS = 2048
MAX_CHUNKS = 32
# Two tile kernels, chosen by the shapes. Measured single-threaded at
# n = 50000, tanh: the explicit loops won by 1.3-3x at h <= 8 and at d = 1,
# h = 16; they tied with the GEMMs at d*h = 64 with h >= 16, and lost by
# 1.3-2.5x from d*h = 160 (h >= 16) or d*h = 256 (any h) on.
# - explicit loops along the rows of a transposed tile, for narrow layers:
#   their tile buffers (a1 and g'(z1), h x T; yhat, k x T; the X tile, d x T)
#   stay within SMALL_TILE_BYTES of L2;
SMALL_TILE_BYTES = 256 * 1024
SMALL_TILE_MIN_ROWS = 64
SMALL_TILE_MAX_ROWS = 4096
# - GEMMs through np.dot on row-major tiles, otherwise: T = 256 rows was the
#   fastest of 128 ... 2048 at (n, d, h) = (50000, 10, 32), (50000, 100, 128)
#   and (20000, 784, 256), though within a few percent of 384 ... 1024; at
#   2048 the tile buffers leave L2 and it was 15-20% slower.
GEMM_TILE_ROWS = 256
GEMM_MIN_HIDDEN = 16
GEMM_MIN_DH = 64
GEMM_ALWAYS_DH = 256


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


# ---------------------------------------------------------------- activations
# No libm call and no branch, so that LLVM vectorises the loops around them.

_INV_LN2 = 1.4426950408889634
_SHIFT = 6755399441055744.0            # 1.5 * 2**52: adding it rounds to an integer
_LN2_HI = 6.93147180369123816490e-01   # ln 2 to 32 bits: m * _LN2_HI is exact for |m| < 2**21
_LN2_LO = 1.90821492927058770002e-10
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (
    1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
    1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800)


@njit(inline="always", **_JIT)
def _exp_parts(x):
    """(s, p) with exp(x) = s * (1 + p) and expm1(x) = s*p + (s - 1), x in [-708, 708]."""
    kd = x * _INV_LN2 + _SHIFT
    m = kd - _SHIFT                          # round(x / ln 2), still a float
    r = (x - m * _LN2_HI) - m * _LN2_LO      # |r| <= ln(2)/2
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
    # the low bits of kd hold m; shifting m + 1023 into the exponent field gives 2**m
    s = _bits_float64((_float64_bits(kd) + 1023) << 52)
    return s, p


@njit(inline="always", **_JIT)
def _tanh(z):
    s, p = _exp_parts(2.0 * min(abs(z), 20.0))
    e = s * p + (s - 1.0)                    # expm1(2|z|), accurate near 0
    return np.copysign(e / (e + 2.0), z)


@njit(inline="always", **_JIT)
def _sigmoid(z):
    s, p = _exp_parts(min(max(-z, -708.0), 708.0))
    # 1 + exp(-z) = (1 + s) + s*p: 1 + s is exact (or s when 1 is below its
    # rounding), so the denominator is rounded once, in the FMA
    return 1.0 / ((1.0 + s) + s * p)


@njit(inline="always", **_JIT)
def _activation(z, code):
    """(g(z), g'(z)) in float64. Every caller passes code as a constant, so
    the branches fold away (a loop-invariant branch left in a loop would stop
    it from vectorising)."""
    if code == TANH:
        t = _tanh(z)
        return t, 1.0 - t * t
    if code == SIGMOID:
        s = _sigmoid(z)
        return s, s * (1.0 - s)
    if code == RELU:
        positive = z > 0.0
        return (z if positive else 0.0), (1.0 if positive else 0.0)
    return z, 1.0


@njit(inline="always", **_JIT)
def _activate_loop(z, a, g, code):
    for i in range(z.shape[0]):
        a[i], g[i] = _activation(np.float64(z[i]), code)


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
            ai, gi = _activation(np.float64(g[i] + w * x[i]), code)
            a[i] = ai
            g[i] = gi
            yhat0[i] += w2 * ai
    else:
        for i in range(x.shape[0]):
            ai, gi = _activation(np.float64(bias + w * x[i]), code)
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
def _residual(yhat, y, scale):
    """yhat := dL/dyhat = scale (yhat - y); returns (sum of (yhat - y)^2, sum of dL/dyhat)."""
    loss = 0.0
    sum_D = 0.0
    for i in range(yhat.shape[0]):
        r = yhat[i] - y[i]
        v = np.float64(r)
        loss += v * v
        D = scale * r
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
def _tile_explicit(XT, YT, r0, T, W1, b1, W2, b2, code, scale,
                   buf_G, buf_A, buf_R, buf_T, grad_W1, grad_b1, grad_W2, grad_b2):
    """One tile of T rows from r0 with explicit loops along the rows.

    Adds the tile's gradients to grad_*, returns its sum of squared residuals.
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
    for c in range(k):
        loss_c, sum_D = _residual(R[c], YT[c, r0:r0 + T], scale)
        loss += loss_c
        grad_b2[c] += sum_D
    for j in range(h):
        _backward_unit(XT, r0, T, W2, j, R, A[j], G[j], dz, grad_W1, grad_b1, grad_W2)
    return loss


# ---------------------------------------------------------------- GEMM tiles

@njit(inline="always", **_JIT)
def _activate_rows(G, A, b1, code):
    """A = g(G + b1), G := g'(G + b1), row by row."""
    for i in range(G.shape[0]):
        Gi = G[i]
        Ai = A[i]
        for j in range(Gi.shape[0]):
            Ai[j], Gi[j] = _activation(np.float64(Gi[j] + b1[j]), code)


@njit(**_JIT)
def _tile_gemm(X, Y, r0, T, W1, b1, W2, W2T, b2, code, scale,
               buf_G, buf_A, buf_R, tmp_W1, tmp_W2, grad_W1, grad_b1, grad_W2, grad_b2):
    """One tile of T rows from r0: the products are BLAS GEMMs (np.dot into
    preallocated outputs), the elementwise work is fused around them.

    Adds the tile's gradients to grad_*, returns its sum of squared residuals.
    """
    h = W1.shape[1]
    k = W2.shape[1]
    X_t = X[r0:r0 + T]
    G = buf_G[:T * h].reshape((T, h))        # z1 - b1, then g'(z1), then dL/dz1
    A = buf_A[:T * h].reshape((T, h))        # a1, then dL/dyhat W2^T
    R = buf_R[:T * k].reshape((T, k))        # yhat - b2, then dL/dyhat
    np.dot(X_t, W1, G)
    if code == TANH:
        _activate_rows(G, A, b1, TANH)
    elif code == SIGMOID:
        _activate_rows(G, A, b1, SIGMOID)
    elif code == RELU:
        _activate_rows(G, A, b1, RELU)
    else:
        _activate_rows(G, A, b1, IDENTITY)
    np.dot(A, W2, R)
    loss = 0.0
    for i in range(T):
        for c in range(k):
            res = R[i, c] + b2[c] - Y[r0 + i, c]
            loss += np.float64(res) * np.float64(res)
            R[i, c] = scale * res
    np.dot(A.T, R, tmp_W2)
    for j in range(h):
        for c in range(k):
            grad_W2[j, c] += tmp_W2[j, c]
    for i in range(T):
        for c in range(k):
            grad_b2[c] += R[i, c]
    # dL/dz1 = (dL/dyhat W2^T) g'(z1) over G, with grad_b1's column sums in
    # the same pass (loops along h: this path is taken for h >= 16 or a large d*h)
    if k == 1:
        w2 = W2T[0]
        for i in range(T):
            Gi = G[i]
            D = R[i, 0]
            for j in range(h):
                dz = (D * w2[j]) * Gi[j]
                Gi[j] = dz
                grad_b1[j] += dz
    else:
        np.dot(R, W2T, A)
        for i in range(T):
            Gi = G[i]
            Ai = A[i]
            for j in range(h):
                dz = Ai[j] * Gi[j]
                Gi[j] = dz
                grad_b1[j] += dz
    np.dot(X_t.T, G, tmp_W1)
    grad_W1_flat = grad_W1.reshape(-1)
    tmp_flat = tmp_W1.reshape(-1)
    for i in range(grad_W1_flat.shape[0]):
        grad_W1_flat[i] += tmp_flat[i]
    return loss


# ---------------------------------------------------------------- chunks

@njit(**_JIT)
def _chunk(c, chunk_rows, tile_rows, use_gemm, X, Y, XT, YT, W1, b1, W2, W2T, b2, code, scale,
           buf_G, buf_A, buf_R, buf_T, tmp_W1, tmp_W2,
           chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss):
    """Chunk c's loss and gradients into its own accumulators, tile by tile."""
    n = X.shape[0]
    begin = c * chunk_rows
    end = min(n, begin + chunk_rows)
    grad_W1 = chunk_W1[c]
    grad_b1 = chunk_b1[c]
    grad_W2 = chunk_W2[c]
    grad_b2 = chunk_b2[c]
    grad_W1[:] = 0
    grad_b1[:] = 0
    grad_W2[:] = 0
    grad_b2[:] = 0
    loss = 0.0
    for r0 in range(begin, end, tile_rows):
        T = min(tile_rows, end - r0)
        if use_gemm:
            loss += _tile_gemm(X, Y, r0, T, W1, b1, W2, W2T, b2, code, scale,
                               buf_G, buf_A, buf_R, tmp_W1, tmp_W2,
                               grad_W1, grad_b1, grad_W2, grad_b2)
        else:
            loss += _tile_explicit(XT, YT, r0, T, W1, b1, W2, b2, code, scale,
                                   buf_G, buf_A, buf_R, buf_T,
                                   grad_W1, grad_b1, grad_W2, grad_b2)
    chunk_loss[c] = loss


@njit(parallel=True, **_JIT)
def _chunks_parallel(n_workers, n_chunks, chunk_rows, tile_rows, use_gemm, X, Y, XT, YT,
                     W1, b1, W2, W2T, b2, code, scale, buf_G, buf_A, buf_R, buf_T, tmp_W1, tmp_W2,
                     chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss):
    # one prange iteration per worker; a worker owns its buffers and a
    # contiguous run of chunks (a static schedule)
    for w in prange(n_workers):
        for c in range(w * n_chunks // n_workers, (w + 1) * n_chunks // n_workers):
            _chunk(c, chunk_rows, tile_rows, use_gemm, X, Y, XT, YT, W1, b1, W2, W2T, b2,
                   code, scale, buf_G[w], buf_A[w], buf_R[w], buf_T[w], tmp_W1[w], tmp_W2[w],
                   chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss)


@njit(**_JIT)
def _plan(n, d, h, k):
    """(n_chunks, chunk_rows, tile_rows, use_gemm): fixed by the shapes alone."""
    chunk_rows = max(MIN_CHUNK_ROWS, (n + MAX_CHUNKS - 1) // MAX_CHUNKS)
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    use_gemm = (h >= GEMM_MIN_HIDDEN and d * h >= GEMM_MIN_DH) or d * h >= GEMM_ALWAYS_DH
    if use_gemm:
        tile_rows = GEMM_TILE_ROWS
    else:
        tile_rows = SMALL_TILE_BYTES // (8 * (2 * h + k + d))
        tile_rows = min(max(tile_rows - tile_rows % 8, SMALL_TILE_MIN_ROWS), SMALL_TILE_MAX_ROWS)
    return n_chunks, chunk_rows, min(tile_rows, chunk_rows), use_gemm


@njit(**_JIT)
def _workspace(X, Y, W1, n_threads):
    """Every buffer of a fit, allocated once: the plan, per-worker tile buffers
    and per-chunk accumulators."""
    n, d = X.shape
    h = W1.shape[1]
    k = Y.shape[1]
    dtype = W1.dtype
    n_chunks, chunk_rows, tile_rows, use_gemm = _plan(n, d, h, k)
    n_workers = max(1, min(n_threads, n_chunks))
    if use_gemm:
        XT = np.empty((0, 0), dtype)
        YT = np.empty((0, 0), dtype)
        tmp_W1 = np.empty((n_workers, d, h), dtype)
        tmp_W2 = np.empty((n_workers, h, k), dtype)
        buf_T = np.empty((n_workers, 0), dtype)
    else:
        # the explicit loops run along rows: a transposed copy of X, once per fit
        XT = np.ascontiguousarray(X.T)
        YT = np.ascontiguousarray(Y.T)
        tmp_W1 = np.empty((n_workers, 0, 0), dtype)
        tmp_W2 = np.empty((n_workers, 0, 0), dtype)
        buf_T = np.empty((n_workers, tile_rows), dtype)
    buffers = (np.empty((n_workers, tile_rows * h), dtype),     # buf_G
               np.empty((n_workers, tile_rows * h), dtype),     # buf_A
               np.empty((n_workers, tile_rows * k), dtype),     # buf_R
               buf_T, tmp_W1, tmp_W2)
    chunks = (np.empty((n_chunks, d, h), dtype), np.empty((n_chunks, h), dtype),
              np.empty((n_chunks, h, k), dtype), np.empty((n_chunks, k), dtype),
              np.empty(n_chunks, np.float64))
    return (n_workers, n_chunks, chunk_rows, tile_rows, use_gemm,
            XT, YT, np.empty((k, h), dtype), buffers, chunks)


@njit(**_JIT)
def _gradients(X, Y, W1, b1, W2, b2, code, workspace, grad_W1, grad_b1, grad_W2, grad_b2):
    """L and its gradients at the current parameters (grads into grad_*); returns L."""
    (n_workers, n_chunks, chunk_rows, tile_rows, use_gemm,
     XT, YT, W2T, buffers, chunks) = workspace
    buf_G, buf_A, buf_R, buf_T, tmp_W1, tmp_W2 = buffers
    chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss = chunks
    n = X.shape[0]
    scale = 2.0 / n                       # dL/dyhat = (2/n) (yhat - y)
    W2T[:, :] = W2.T
    if n_chunks == 1:
        # one chunk: no parallel region (its start-up would dominate small n)
        _chunk(0, chunk_rows, tile_rows, use_gemm, X, Y, XT, YT, W1, b1, W2, W2T, b2,
               code, scale, buf_G[0], buf_A[0], buf_R[0], buf_T[0], tmp_W1[0], tmp_W2[0],
               chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss)
    else:
        _chunks_parallel(n_workers, n_chunks, chunk_rows, tile_rows, use_gemm, X, Y, XT, YT,
                         W1, b1, W2, W2T, b2, code, scale, buf_G, buf_A, buf_R, buf_T,
                         tmp_W1, tmp_W2, chunk_W1, chunk_b1, chunk_W2, chunk_b2, chunk_loss)
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
    return loss / n


@njit(**_JIT)
def _step(p, grad, learning_rate):
    """p := p - learning_rate * grad, in p's dtype."""
    p_flat = p.reshape(-1)
    grad_flat = grad.reshape(-1)
    for i in range(p_flat.shape[0]):
        p_flat[i] -= learning_rate * grad_flat[i]


@njit(**_JIT)
def train(X, Y, W1, b1, W2, b2, code, learning_rate, epochs, n_threads, loss_curve):
    """Run the epochs of gradient descent on W1, b1, W2, b2 in place.

    learning_rate is a scalar of the parameters' dtype. loss_curve[e] receives
    the loss epoch e starts from; returns the number of finished epochs
    (stops at the first loss that is not finite).
    """
    workspace = _workspace(X, Y, W1, n_threads)
    grad_W1 = np.empty_like(W1)
    grad_b1 = np.empty_like(b1)
    grad_W2 = np.empty_like(W2)
    grad_b2 = np.empty_like(b2)
    for epoch in range(epochs):
        loss = _gradients(X, Y, W1, b1, W2, b2, code, workspace,
                          grad_W1, grad_b1, grad_W2, grad_b2)
        loss_curve[epoch] = loss
        if not np.isfinite(loss):
            return epoch
        _step(W1, grad_W1, learning_rate)
        _step(b1, grad_b1, learning_rate)
        _step(W2, grad_W2, learning_rate)
        _step(b2, grad_b2, learning_rate)
    return epochs


@njit(**_JIT)
def loss_and_gradients(X, Y, W1, b1, W2, b2, code, n_threads, grad_W1, grad_b1, grad_W2, grad_b2):
    """The loss at the parameters; its gradients into grad_*."""
    workspace = _workspace(X, Y, W1, n_threads)
    return _gradients(X, Y, W1, b1, W2, b2, code, workspace, grad_W1, grad_b1, grad_W2, grad_b2)
