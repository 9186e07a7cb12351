"""The network's parameters and their documented initialisation."""

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike


class Params(NamedTuple):
    """Weights and biases of the network ``yhat = g(X W1 + b1) W2 + b2``.

    A named tuple of four arrays, for d features, h hidden units and k
    outputs: ``W1, b1, W2, b2 = model.params`` unpacks it. Wherever a
    ``Params`` is accepted (``init`` of :func:`shallownet.fit`, ``params`` of
    :func:`shallownet.loss_and_gradients`), a plain 4-tuple of arrays of these
    shapes is accepted too.

    Attributes
    ----------
    W1 : ndarray of shape (d, h)
        Weights from the inputs to the hidden units.
    b1 : ndarray of shape (h,)
        Biases of the hidden units.
    W2 : ndarray of shape (h, k)
        Weights from the hidden units to the outputs.
    b2 : ndarray of shape (k,)
        Biases of the outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from shallownet import Params
    >>> p = Params(np.zeros((3, 4)), np.zeros(4), np.zeros((4, 1)), np.zeros(1))
    >>> p.W1.shape, p.b2.shape
    ((3, 4), (1,))
    """

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray


# the type of every public argument that takes parameters (fit's init,
# loss_and_gradients' params, an Evaluator's call): a Params or a plain 4-tuple
ParamsLike = Params | tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]


def init_params(d: int, hidden: int, k: int, activation: str,
                random_state: int | np.random.Generator | None,
                dtype: DTypeLike) -> Params:
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
