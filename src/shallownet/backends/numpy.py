"""The NumPy reference backend: the readable definition of correct.

Full-batch gradient descent on ``L = (1/n) sum (Y - yhat)**2`` exactly as
``docs/derivation.md`` derives it, one NumPy expression per line of the math.
Every other backend is tested against this module.
"""

import numpy as np

from .._activations import ACTIVATIONS
from .._params import Params

# BLAS may use every one of the fit's n_threads (None); the compiled backends say 1.
BLAS_THREADS = None

_BY_CODE = {a.code: a for a in ACTIVATIONS.values()}


def _loss_and_gradients(X, Y, W1, b1, W2, b2, act):
    n = X.shape[0]
    z1 = X @ W1 + b1                      # (n, h)
    a1 = act.g(z1)                        # (n, h)
    yhat = a1 @ W2 + b2                   # (n, k)
    residual = Y - yhat
    loss = float(np.sum(residual * residual, dtype=np.float64)) / n
    dL_dyhat = (-2.0 / n) * residual      # (n, k)
    grad_W2 = a1.T @ dL_dyhat             # (h, k)
    grad_b2 = dL_dyhat.sum(axis=0)        # (k,)
    dL_dz1 = (dL_dyhat @ W2.T) * act.g_prime(z1)   # (n, h)
    grad_W1 = X.T @ dL_dz1                # (d, h)
    grad_b1 = dL_dz1.sum(axis=0)          # (h,)
    dtype = X.dtype
    return loss, Params(grad_W1.astype(dtype, copy=False), grad_b1.astype(dtype, copy=False),
                        grad_W2.astype(dtype, copy=False), grad_b2.astype(dtype, copy=False))


def apply_activation(z, activation_code):
    act = _BY_CODE[activation_code]
    return act.g(z), act.g_prime(z)


def loss_and_gradients(X, Y, params, activation_code, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    return _loss_and_gradients(X, Y, *params, _BY_CODE[activation_code])


def train(X, Y, params, activation_code, learning_rate, epochs, n_threads, loss_curve):
    """Run ``epochs`` steps of ``p := p - learning_rate * dL/dp`` in place.

    ``loss_curve[e]`` receives the loss at the parameters epoch ``e`` starts
    from. Stops early, returning the number of finished epochs, as soon as the
    loss is not finite; otherwise returns ``epochs``.
    """
    act = _BY_CODE[activation_code]
    lr = X.dtype.type(learning_rate)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by the caller
        for epoch in range(epochs):
            loss, grads = _loss_and_gradients(X, Y, *params, act)
            loss_curve[epoch] = loss
            if not np.isfinite(loss):
                return epoch
            for p, g in zip(params, grads):
                p -= lr * g
    return epochs
