"""fit() and loss_and_gradients(): validate, initialise, dispatch."""

import numpy as np
from threadpoolctl import threadpool_limits

from . import _validation as v
from ._params import Params, init_params
from .backends import resolve_backend
from .model import Model


def _blas_limit(module, n_threads):
    limit = module.BLAS_THREADS if module.BLAS_THREADS is not None else n_threads
    return threadpool_limits(limits=limit, user_api="blas")


def fit(X, y, *, hidden=16, activation="tanh", learning_rate=0.01, epochs=1000,
        backend="auto", random_state=None, init=None, dtype=None, n_threads=None):
    """Train ``yhat = g(X W1 + b1) W2 + b2`` by full-batch gradient descent.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,) or (n, k)
    hidden : int, the number of hidden units h.
    activation : {"tanh", "sigmoid" (alias "logistic"), "relu", "identity"}
    learning_rate : float, the step size in ``p := p - learning_rate * dL/dp``.
    epochs : int, the number of full-batch steps.
    backend : {"auto", "numpy", "numba", "cython"}
    random_state : None, int or numpy Generator, seeds the initial weights
        (see ``init_params``); ignored when ``init`` is given.
    init : Params or 4-tuple (W1, b1, W2, b2), optional, initial weights; copied.
    dtype : {None, float32, float64}; None follows X (float32 X stays float32,
        everything else becomes float64).
    n_threads : int, optional, threads for the compiled loops (default: every
        core this process may use). Results do not depend on it.

    Returns
    -------
    Model
        With ``params``, ``loss_curve`` (loss at the start of each epoch) and
        ``predict``.

    Raises
    ------
    FloatingPointError
        When the loss stops being finite (the learning rate is too large).
    """
    dtype = v.check_dtype(dtype, X)
    X, Y = v.check_X_y(X, y, dtype)
    hidden = v.check_positive_int(hidden, "hidden")
    act = v.check_activation(activation)
    learning_rate = v.check_learning_rate(learning_rate)
    epochs = v.check_positive_int(epochs, "epochs")
    n_threads = v.check_n_threads(n_threads)
    backend_name, module = resolve_backend(backend)
    n, d = X.shape
    k = Y.shape[1]
    if init is not None:
        W1_shape = np.shape(init[0]) if isinstance(init, (tuple, list)) and len(init) == 4 else None
        if W1_shape is not None and len(W1_shape) == 2 and W1_shape[1] != hidden:
            raise ValueError(f"init.W1 has {W1_shape[1]} hidden units but hidden={hidden}; "
                             f"pass hidden={W1_shape[1]}")
        params = v.check_init(init, d, hidden, k, dtype)
    else:
        rng = v.check_random_state(random_state)
        params = init_params(d, hidden, k, activation, rng, dtype)

    loss_curve = np.full(epochs, np.nan)
    with _blas_limit(module, n_threads):
        done = module.train(X, Y, params, act.code, learning_rate, epochs, n_threads, loss_curve)
    if done < epochs or not all(np.isfinite(p).all() for p in params):
        raise FloatingPointError(
            f"training diverged: the loss became {loss_curve[min(done, epochs - 1)]:g} at epoch {done} "
            f"with learning_rate={learning_rate:g}; try a smaller learning_rate "
            f"(for example {learning_rate / 10:g}) or scale X and y")
    return Model(params=params, loss_curve=loss_curve, activation=activation,
                 backend=backend_name, one_d_y=np.ndim(y) == 1, learning_rate=learning_rate)


def loss_and_gradients(params, X, y, activation="tanh", backend="numpy", n_threads=None):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``.

    ``params`` is a Params or 4-tuple; its shapes fix h. Computed by the named
    backend in the dtype of X (float32 X stays float32), never modifying the inputs.
    """
    dtype = v.check_dtype(None, X)
    X, Y = v.check_X_y(X, y, dtype)
    act = v.check_activation(activation)
    n_threads = v.check_n_threads(n_threads)
    _, module = resolve_backend(backend)
    if not isinstance(params, (tuple, list)) or len(params) != 4:
        raise TypeError(f"params must be a Params or a 4-tuple (W1, b1, W2, b2), got {type(params).__name__}")
    W1_shape = np.shape(params[0])
    if len(W1_shape) != 2:
        raise ValueError(f"params.W1 must be 2-D of shape (d, h), got shape {W1_shape}")
    checked = v.check_init(params, X.shape[1], W1_shape[1], Y.shape[1], dtype, name="params")
    with _blas_limit(module, n_threads):
        loss, grads = module.loss_and_gradients(X, Y, checked, act.code, n_threads)
    return float(loss), Params(*grads)
