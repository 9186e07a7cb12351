"""shallownet: one-hidden-layer neural networks for regression, trained fast.

``z1 = X W1 + b1``, ``a1 = g(z1)``, ``yhat = a1 W2 + b2``,
``L = (1/n) sum (y - yhat)**2``, full-batch gradient descent, computed by a
NumPy reference, Numba kernels or a Cython extension (see ``docs/``).
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._evaluator import Evaluator
from ._fit import fit, loss_and_gradients
from ._params import Params
from .backends import available_backends
from .model import Model, load

try:
    __version__ = _version("shallownet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Evaluator", "MLPRegressor", "Model", "Params", "available_backends", "fit", "load",
           "loss_and_gradients", "__version__"]


def __getattr__(name):
    # the estimator imports scikit-learn: only when asked for
    if name == "MLPRegressor":
        from .estimator import MLPRegressor
        return MLPRegressor
    raise AttributeError(f"module 'shallownet' has no attribute {name!r}")
