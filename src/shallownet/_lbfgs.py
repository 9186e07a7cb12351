"""L-BFGS over a network's packed parameters, as scikit-learn's MLP runs it.

SciPy's L-BFGS-B minimises ``evaluate`` over one vector holding
``W1, W2, b1, b2`` raveled in that order (scikit-learn's packing: every
layer's coefficients, then every layer's intercepts), with the options
scikit-learn passes: ``maxfun=max_fun``, ``maxiter=max_iter``,
``gtol=tol``, and ``iprint`` only for SciPy releases that still read it.
The start is packed in the parameters' dtype, as scikit-learn packs it:
SciPy iterates in float64 but evaluates at points cast to the start's
dtype, so float32 parameters are evaluated at float32 points, as in
scikit-learn.
Each call unpacks the vector into C-contiguous views of one buffer in the
parameters' dtype, so ``evaluate`` receives arrays a backend accepts as
they are.
"""

import numpy as np
import scipy
import scipy.optimize

from ._params import Params

# SciPy 1.15 dropped L-BFGS-B's iprint option (it warns when given)
_SCIPY_READS_IPRINT = tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15)


def pack(params):
    """One vector in the parameters' dtype: W1, W2, b1, b2 raveled (scikit-learn's order)."""
    W1, b1, W2, b2 = params
    return np.concatenate([W1.ravel(), W2.ravel(), b1, b2])


class _Unpacker:
    """Views ``Params`` into a vector's buffer, cast to ``dtype``."""

    def __init__(self, shapes, dtype):
        (d, h), (_, k) = shapes
        self.dtype = np.dtype(dtype)
        ends = np.cumsum([d * h, h * k, h, k])
        self.slices = [slice(0, ends[0]), slice(ends[1], ends[2]),
                       slice(ends[0], ends[1]), slice(ends[2], ends[3])]
        self.shapes = [(d, h), (h,), (h, k), (k,)]
        self.size = int(ends[-1])
        # the evaluation buffer, reused: float64 vectors are copied into it
        self.buffer = np.empty(self.size, dtype=self.dtype)

    def __call__(self, x, out=None):
        buf = self.buffer if out is None else out
        buf[...] = x
        return Params(*(buf[s].reshape(shape) for s, shape in zip(self.slices, self.shapes)))


def run_lbfgs(evaluate, params, *, max_iter, max_fun, tol, callback=None, iprint=-1):
    """Minimise ``evaluate(params) -> (loss, Params grads)`` from ``params`` by L-BFGS-B.

    ``params`` (a Params) gives the start, the shapes and the dtype in
    which ``evaluate`` is called; the Params it receives are views of one
    reused buffer, valid only during the call. ``callback(params)``, if
    given, is called after each iteration. ``iprint`` is scikit-learn's
    (1 when verbose, else -1), passed to SciPy releases that read it.

    Returns ``(Params, result)``: the final parameters in ``params``' dtype
    (new arrays) and SciPy's OptimizeResult (``x`` the float64 vector in
    the order of ``pack``, ``fun``, ``nit``, ``nfev``, ``status``, ``message``).
    """
    unpack = _Unpacker((params.W1.shape, params.W2.shape), params.W1.dtype)
    grad = np.empty(unpack.size, dtype=np.float64)   # SciPy's iterations are float64

    def fun(x):
        loss, grads = evaluate(unpack(x))
        W1, b1, W2, b2 = grads
        # the same order as pack(), written into one reused vector
        grad[unpack.slices[0]] = W1.ravel()
        grad[unpack.slices[2]] = W2.ravel()
        grad[unpack.slices[1]] = b1
        grad[unpack.slices[3]] = b2
        return float(loss), grad.copy()

    options = {"maxfun": max_fun, "maxiter": max_iter, "gtol": tol}
    if _SCIPY_READS_IPRINT:
        options["iprint"] = iprint
    user_callback = None
    if callback is not None:
        def user_callback(x):
            callback(unpack(x, np.empty(unpack.size, dtype=unpack.dtype)))
    result = scipy.optimize.minimize(fun, pack(params), method="L-BFGS-B", jac=True,
                                     options=options, callback=user_callback)
    final = unpack(result.x, np.empty(unpack.size, dtype=unpack.dtype))
    return final, result
