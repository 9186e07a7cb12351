"""The Numba backend: a thin adapter over ``shallownet._numba_kernels``.

Allocates the outputs, sets Numba's thread count for the call and hands the
validated arrays to the compiled kernels (compiled on first use and cached on
disk; importing this module compiles nothing).
"""

from contextlib import contextmanager

import numba
import numpy as np

from .. import _numba_kernels as kernels
from .._params import Params

# The kernels call BLAS from inside their own parallel region: one thread each.
BLAS_THREADS = 1


@contextmanager
def _numba_threads(n_threads):
    """Numba's thread count set to n_threads (at most its pool's size) for the
    block, then restored; yields the count set."""
    previous = numba.get_num_threads()
    n_threads = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n_threads)
    try:
        yield n_threads
    finally:
        numba.set_num_threads(previous)


def train(X, Y, params, activation_code, learning_rate, epochs, n_threads, loss_curve):
    """Run ``epochs`` steps of ``p := p - learning_rate * dL/dp`` on ``params`` in place.

    Returns the number of finished epochs (see ``shallownet.backends``).
    """
    # the step is taken in the parameters' dtype, as the reference takes it
    learning_rate = X.dtype.type(learning_rate)
    with _numba_threads(n_threads) as threads:
        return int(kernels.train(X, Y, *params, activation_code, learning_rate, epochs,
                                 threads, loss_curve))


def loss_and_gradients(X, Y, params, activation_code, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    grads = Params(*(np.empty_like(p) for p in params))
    with _numba_threads(n_threads) as threads:
        loss = kernels.loss_and_gradients(X, Y, *params, activation_code, threads, *grads)
    return float(loss), grads


def apply_activation(z, activation_code):
    """``(g(z), g'(z))`` as the kernels compute them, for a C-contiguous 1-D ``z``."""
    g = np.empty_like(z)
    g_prime = np.empty_like(z)
    kernels.activate(z, g, g_prime, activation_code)
    return g, g_prime
