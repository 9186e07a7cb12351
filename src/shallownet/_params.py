"""The network's parameters and their documented initialisation."""

from typing import NamedTuple

import numpy as np


class Params(NamedTuple):
    """Weights and biases of the network ``yhat = g(X W1 + b1) W2 + b2``.

    W1 has shape (d, h), b1 (h,), W2 (h, k), b2 (k,).
    """

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray


def init_params(d, hidden, k, activation, random_state, dtype):
    """Draw initial weights, identically for every backend.

    Glorot-uniform, as scikit-learn's MLP does: with
    ``rng = numpy.random.default_rng(random_state)``, each layer with fan-in
    ``f_in`` and fan-out ``f_out`` draws its weight matrix and then its bias
    vector from ``rng.uniform(-bound, bound)`` with
    ``bound = sqrt(factor / (f_in + f_out))``, ``factor = 2`` for the sigmoid
    and 6 otherwise. Order of draws: W1, b1, W2, b2. The draws are made in
    float64 and then cast to ``dtype``.
    """
    rng = np.random.default_rng(random_state)
    factor = 2.0 if activation in ("sigmoid", "logistic") else 6.0
    arrays = []
    for fan_in, fan_out in ((d, hidden), (hidden, k)):
        bound = np.sqrt(factor / (fan_in + fan_out))
        arrays.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        arrays.append(rng.uniform(-bound, bound, fan_out))
    return Params(*(np.ascontiguousarray(a, dtype=dtype) for a in arrays))
