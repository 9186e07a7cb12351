"""L-BFGS over the packed parameters: SciPy's L-BFGS-B, as scikit-learn runs it.

``evaluate(params) -> (loss, Params grads)`` is the only access to the data,
so the same driver serves a local fit and a distributed one
(``shallownet.dask``), where each evaluation is one pass over the parts.
"""

from typing import NamedTuple

import numpy as np

from ._params import Params


class LbfgsResult(NamedTuple):
    params: Params           # the last iterate, in the dtype of the starting params
    loss_curve: np.ndarray   # float64 (n_iter,): the loss after each iteration
    initial_loss: float      # the loss at the starting params
    n_iter: int              # iterations taken
    n_fun: int               # evaluations of the loss and gradients
    converged: bool          # SciPy's success flag (False on max_iter, max_fun or a callback stop)
    message: str


def pack(params):
    """The four arrays as one float64 vector (W1, b1, W2, b2, each row-major)."""
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in params])


def unpack(vector, like):
    """Params shaped and typed as ``like`` from a packed vector (fresh arrays)."""
    arrays, start = [], 0
    for p in like:
        stop = start + p.size
        arrays.append(np.ascontiguousarray(vector[start:stop].reshape(p.shape), dtype=p.dtype))
        start = stop
    return Params(*arrays)


def run_lbfgs(evaluate, params, *, max_iter, max_fun, tol, callback=None):
    """Minimise the loss from ``params`` with L-BFGS-B (no bounds).

    ``max_iter`` and ``max_fun`` cap the iterations and the evaluations;
    ``tol`` is SciPy's ``gtol`` (the largest gradient entry at which to stop),
    as in scikit-learn's ``solver="lbfgs"``. ``callback(iteration, loss,
    params) -> bool`` is called after each iteration; True stops.
    Raises FloatingPointError when the loss at the last iterate is not finite.
    """
    from scipy.optimize import minimize  # SciPy's optimizer module: only when used

    like = Params(*params)
    losses = []

    def fun(vector):
        current = unpack(vector, like)
        loss, grads = evaluate(current)
        loss = float(loss)
        if not losses:
            losses.append(loss)
        return loss, pack(grads)

    def on_iteration(intermediate_result):
        loss = float(intermediate_result.fun)
        losses.append(loss)
        if callback is not None and callback(len(losses) - 2, loss,
                                             unpack(intermediate_result.x, like)):
            raise StopIteration

    result = minimize(fun, pack(like), jac=True, method="L-BFGS-B", callback=on_iteration,
                      options=dict(maxiter=max_iter, maxfun=max_fun, gtol=tol))
    # a trial point of the line search may overflow (the search backs off);
    # the point it ends on may not
    if not np.isfinite(result.fun):
        raise FloatingPointError(f"L-BFGS diverged: the loss became {result.fun:g}; scale X and y")
    return LbfgsResult(unpack(result.x, like), np.asarray(losses[1:], dtype=np.float64), losses[0],
                       int(result.nit), int(result.nfev), bool(result.success),
                       str(result.message))
