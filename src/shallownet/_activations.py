"""The activations g and their derivatives g', as the NumPy reference computes them.

Every backend knows an activation by the integer code in ``ACTIVATIONS``; the
compiled backends carry their own vectorisable implementations of the same
formulas (see ``docs/kernels.md``) and are tested against these functions.

Derivatives are written in terms of what the forward pass already holds, so a
kernel never evaluates g twice:

==========  =======================  ==========================================
name        g(z)                     g'(z)
==========  =======================  ==========================================
identity    z                        1
relu        max(z, 0)                1 if z > 0 else 0 (0 at z == 0)
tanh        tanh(z)                  1 - tanh(z)**2
sigmoid     1 / (1 + exp(-z))        s (1 - s), s = sigmoid(z)
==========  =======================  ==========================================
"""

from typing import Callable, NamedTuple

import numpy as np


class Activation(NamedTuple):
    code: int                       # the integer the compiled kernels switch on
    g: Callable[[np.ndarray], np.ndarray]
    g_prime: Callable[[np.ndarray], np.ndarray]


def _identity(z):
    return z.copy()


def _identity_prime(z):
    return np.ones_like(z)


def _relu(z):
    return np.maximum(z, 0)


def _relu_prime(z):
    return (z > 0).astype(z.dtype)


def _tanh_prime(z):
    t = np.tanh(z)
    return 1 - t * t


def _sigmoid(z):
    # imported on first use: scipy.special was 0.24 of the 0.38 s that
    # `import shallownet` took (python -X importtime)
    from scipy.special import expit
    return expit(z)


def _sigmoid_prime(z):
    s = _sigmoid(z)
    return s * (1 - s)


# the codes, here only (csrc/_activations.h repeats them as SN_* for C)
IDENTITY, RELU, TANH, SIGMOID = 0, 1, 2, 3
ACTIVATIONS = {
    "identity": Activation(IDENTITY, _identity, _identity_prime),
    "relu": Activation(RELU, _relu, _relu_prime),
    "tanh": Activation(TANH, np.tanh, _tanh_prime),
    "sigmoid": Activation(SIGMOID, _sigmoid, _sigmoid_prime),
}
# scikit-learn's name for the sigmoid
ACTIVATIONS["logistic"] = ACTIVATIONS["sigmoid"]
