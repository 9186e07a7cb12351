"""L-BFGS over the packed parameters: SciPy's L-BFGS-B, as scikit-learn runs it.

``evaluate(params) -> (loss, Params grads)`` is the only access to the data,
so the same driver serves a local fit, a distributed one
(``shallownet.dask``), where each evaluation is one pass over the parts, and
the scikit-learn drop-in (``shallownet.neural_network``).

As scikit-learn runs it: the parameters are packed in its order (every
layer's coefficients, then every layer's intercepts: W1, W2, b1, b2), in
the parameters' dtype; SciPy iterates in float64 but evaluates at points
cast to the start's dtype (float32 parameters are evaluated at float32
points, as in scikit-learn); the options are ``maxfun``, ``maxiter``,
``gtol=tol``, and ``iprint`` for SciPy releases that still read it.
"""

from typing import Any, NamedTuple

import numpy as np
import scipy

from ._params import Params

# SciPy 1.15 dropped L-BFGS-B's iprint option (it warns when given)
_SCIPY_READS_IPRINT = tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15)


class LbfgsResult(NamedTuple):
    params: Params           # the last iterate, in the dtype of the starting params
    loss_curve: np.ndarray   # float64 (n_iter,): the loss after each iteration
    initial_loss: float      # the loss at the starting params
    n_iter: int              # iterations taken
    n_fun: int               # evaluations of the loss and gradients
    converged: bool          # SciPy's success flag (False on max_iter, max_fun or a callback stop)
    message: str
    optimize_result: Any     # SciPy's OptimizeResult (x: the float64 iterate, packed; status)


def pack(params):
    """One vector, W1, W2, b1, b2 raveled (scikit-learn's order), in their common dtype."""
    W1, b1, W2, b2 = params
    return np.concatenate([np.ravel(W1), np.ravel(W2), np.ravel(b1), np.ravel(b2)])


def unpack(vector, like):
    """Params shaped and typed as ``like`` from a packed vector (fresh arrays)."""
    W1, b1, W2, b2 = like
    ends = np.cumsum([W1.size, W2.size, b1.size, b2.size])
    pieces = np.split(np.asarray(vector), ends[:-1])
    return Params(*(np.ascontiguousarray(piece.reshape(p.shape), dtype=p.dtype)
                    for piece, p in zip((pieces[0], pieces[2], pieces[1], pieces[3]), like)))


def packed_loss(evaluate, like):
    """The packed form ``loss(x, out, scale) -> L`` that ``run_lbfgs`` takes,
    over ``evaluate(params) -> (L, grads)`` on Params shaped and typed as
    ``like``."""
    def loss(x, out, scale):
        value, grads = evaluate(unpack(x, like))
        np.multiply(pack(grads), scale, out=out)
        return value
    return loss


def run_lbfgs(loss_at, params, *, max_iter, max_fun, tol, callback=None, iprint=-1,
              check_finite=True):
    """Minimise the loss from ``params`` with L-BFGS-B (no bounds).

    ``loss_at(x, out, scale) -> L`` evaluates on packed vectors in the
    parameters' dtype (``shallownet.backends.open_packed_loss``), its
    gradients times ``scale`` into ``out``.

    ``max_iter`` and ``max_fun`` cap the iterations and the evaluations;
    ``tol`` is SciPy's ``gtol`` (the largest gradient entry at which to stop),
    as in scikit-learn's ``solver="lbfgs"``. ``callback(iteration, loss,
    params) -> bool`` is called after each iteration; True stops. ``iprint``
    is scikit-learn's (1 when verbose, else -1), passed to SciPy releases
    that read it. Raises FloatingPointError when the loss at the last
    iterate is not finite, unless ``check_finite`` is False (scikit-learn
    checks the weights instead).
    """
    like = Params(*params)
    dtype = like.W1.dtype
    losses = []

    def fun(vector):
        # SciPy's float64 point in the parameters' dtype, as unpack would cast it
        x = np.ascontiguousarray(vector, dtype=dtype)
        grad = np.empty_like(x)
        loss = float(loss_at(x, grad, 1.0))
        if not losses:
            losses.append(loss)
        return loss, grad.astype(np.float64, copy=False)

    def on_iteration(intermediate_result):
        loss = float(intermediate_result.fun)
        losses.append(loss)
        if callback is not None and callback(len(losses) - 2, loss,
                                             unpack(intermediate_result.x, like)):
            raise StopIteration

    result = minimize_packed(fun, pack(like), max_iter=max_iter, max_fun=max_fun, tol=tol,
                             iprint=iprint, callback=on_iteration)
    # a trial point of the line search may overflow (the search backs off);
    # the point it ends on may not
    if check_finite and not np.isfinite(result.fun):
        raise FloatingPointError(f"L-BFGS diverged: the loss became {result.fun:g}; scale X and y")
    return LbfgsResult(unpack(result.x, like), np.asarray(losses[1:], dtype=np.float64), losses[0],
                       int(result.nit), int(result.nfev), bool(result.success),
                       str(result.message), result)


def minimize_packed(fun, x0, *, max_iter, max_fun, tol, iprint=-1, callback=None):
    """SciPy's L-BFGS-B from the packed vector ``x0``, as scikit-learn calls
    it: ``fun(x) -> (loss, gradient)`` on packed vectors, the options above;
    returns SciPy's OptimizeResult. Without ``callback`` (scikit-learn passes
    none) SciPy builds no intermediate result per iteration."""
    from scipy.optimize import minimize  # SciPy's optimizer module: only when used

    options = dict(maxiter=max_iter, maxfun=max_fun, gtol=tol)
    if _SCIPY_READS_IPRINT:
        options["iprint"] = iprint
    return minimize(fun, x0, jac=True, method="L-BFGS-B", callback=callback, options=options)
