"""The Cython backend: a thin adapter over the compiled ``shallownet._cython_train``.

The kernels (``csrc/_cython_train.pyx``, ``csrc/_activations.h``) run the whole
block of epochs, every batch and every optimizer step, in one call with the GIL
released; this module only allocates outputs and unpacks ``Params``,
``OptimizerState`` and ``TrainSpec``. See ``docs/kernels.md`` for the design
and ``docs/training.md`` for the optimizers.
"""

import numpy as np

from .. import _cython_train as _kernels
from .._params import Params

# The kernels call BLAS from inside their own parallel region, one chunk per
# thread: BLAS itself must stay on one thread or the cores are oversubscribed.
BLAS_THREADS = 1


def train(X, Y, sample_weight, params, state, spec, orders, loss_curve, n_threads):
    """Run ``len(loss_curve)`` epochs, updating ``params`` and ``state`` in place.

    See ``shallownet.backends`` for the contract. Returns the number of
    finished epochs (all of them, or the first with a non-finite batch loss).
    """
    orders = np.ascontiguousarray(orders, dtype=np.int64)
    if orders.ndim != 2 or orders.shape[0] == 0:
        orders = np.empty((0, 0), dtype=np.int64)
    return _kernels.train(
        X, Y, np.ascontiguousarray(sample_weight, dtype=X.dtype), *params, *state.m, *state.v,
        state.t, int(spec.activation), int(spec.optimizer), float(spec.learning_rate),
        float(spec.power_t), float(spec.momentum), bool(spec.nesterov), float(spec.beta1),
        float(spec.beta2), float(spec.epsilon), float(spec.alpha), int(spec.batch_size),
        int(spec.epoch0), orders, loss_curve, n_threads)


def loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    grads = Params(*(np.empty_like(p) for p in params))
    loss = _kernels.loss_and_gradients(X, Y, np.ascontiguousarray(sample_weight, dtype=X.dtype),
                                       *params, *grads, activation_code, float(alpha), n_threads)
    return loss, grads


def apply_activation(z, activation_code):
    """Return ``(g(z), g'(z))`` as this backend's kernels compute them."""
    g_prime = np.array(z, copy=True, order="C")
    g = np.empty_like(g_prime)
    if g.size:
        _kernels.apply_activation(g_prime, g, activation_code)
    return g, g_prime
