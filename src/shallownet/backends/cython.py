"""The Cython backend: a thin adapter over the compiled ``shallownet._cython_train``.

The kernels (``csrc/_cython_train.pyx``, ``csrc/_activations.h``) run the whole
epoch loop with the GIL released; this module only allocates outputs and
unpacks ``Params``. See ``docs/kernels.md`` for the design.
"""

import numpy as np

from .. import _cython_train as _kernels
from .._params import Params

# The kernels call BLAS from inside their own parallel region, one chunk per
# thread: BLAS itself must stay on one thread or the cores are oversubscribed.
BLAS_THREADS = 1


def train(X, Y, params, activation_code, learning_rate, epochs, n_threads, loss_curve):
    """Run ``epochs`` steps of ``p := p - learning_rate * dL/dp`` in place.

    ``loss_curve[e]`` receives the loss at the parameters epoch ``e`` starts
    from. Returns the number of finished epochs (``epochs``, or the first epoch
    whose loss is not finite).
    """
    W1, b1, W2, b2 = params
    return _kernels.train(X, Y, W1, b1, W2, b2, activation_code, learning_rate,
                          epochs, n_threads, loss_curve)


def loss_and_gradients(X, Y, params, activation_code, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    grads = Params(*(np.empty_like(p) for p in params))
    loss = _kernels.loss_and_gradients(X, Y, *params, *grads, activation_code, n_threads)
    return loss, grads


def apply_activation(z, activation_code):
    """Return ``(g(z), g'(z))`` as this backend's kernels compute them."""
    g_prime = np.array(z, copy=True, order="C")
    g = np.empty_like(g_prime)
    if g.size:
        _kernels.apply_activation(g_prime, g, activation_code)
    return g, g_prime
