"""shallownet: one-hidden-layer neural networks for regression, trained fast.

``z1 = X W1 + b1``, ``a1 = g(z1)``, ``yhat = a1 W2 + b2``,
``L = (1/n) sum (y - yhat)**2``, full-batch gradient descent, computed by a
NumPy reference, Numba kernels or a Cython extension (see ``docs/``).
"""

from ._evaluator import Evaluator
from ._fit import fit, loss_and_gradients
from ._params import Params
from .backends import available_backends
from .model import Model, load

__all__ = ["Evaluator", "MLPRegressor", "Model", "Params", "ShallowNetRegressor",
           "available_backends", "fit", "load",
           "loss_and_gradients", "__version__"]


def _installed_version():
    # importlib.metadata took a third (42 of 126 ms) of `import shallownet`:
    # read on first use of __version__ only
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("shallownet")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name):
    if name == "__version__":
        global __version__
        __version__ = _installed_version()
        return __version__
    # the estimators import scikit-learn: only when asked for. MLPRegressor
    # is the drop-in for scikit-learn's (its names, its loss);
    # ShallowNetRegressor takes fit's names and shallownet's loss.
    if name == "MLPRegressor":
        from .neural_network import MLPRegressor
        return MLPRegressor
    if name == "ShallowNetRegressor":
        from .estimator import ShallowNetRegressor
        return ShallowNetRegressor
    raise AttributeError(f"module 'shallownet' has no attribute {name!r}")
