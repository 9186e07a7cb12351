"""Loss and gradients evaluated repeatedly on data validated once.

What an L-BFGS loop, a distributed worker or a cross-validation harness
needs: the data are checked and converted once, here; each call then checks
only the parameters (shapes, dtype, finiteness: O(d h)) and calls the
backend's kernel.
"""

from __future__ import annotations

import numpy as np

from . import _validation as v
from ._params import Params, ParamsLike
from .backends import BLAS_SERIAL_WORK, blas_work, resolve_backend, thread_limits


class Evaluator:
    """The loss ``L`` and its gradients at any parameters, on fixed data.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Inputs, validated and converted once.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    activation : str, default="tanh"
        ``"tanh"``, ``"sigmoid"`` (``"logistic"``), ``"relu"`` or ``"identity"``.
    alpha : float, default=0.0
        L2 penalty: ``L += alpha * (|W1|^2 + |W2|^2) / sum(sample_weight)``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights of a weighted mean; unit weights when None.
    backend : str, default="auto"
        ``"auto"``, ``"numpy"``, ``"numba"`` or ``"cython"``.
    dtype : None, "float32" or "float64"
        None keeps float32 X in float32, anything else becomes float64.
    n_threads : int, optional
        Threads of the compiled kernels (default: every usable core).

    Examples
    --------
    >>> import numpy as np, shallownet
    >>> X, y = np.ones((4, 2)), np.zeros(4)
    >>> evaluate = shallownet.Evaluator(X, y, backend="numpy")
    >>> params = shallownet.Params(np.zeros((2, 3)), np.zeros(3), np.zeros((3, 1)), np.zeros(1))
    >>> loss, grads = evaluate(params)
    >>> loss
    0.0
    """

    def __init__(self, X, y, *, activation="tanh", alpha=0.0, sample_weight=None,
                 backend="auto", dtype=None, n_threads=None):
        self.dtype = v.check_dtype(dtype, X)
        self.X, self.Y = v.check_X_y(X, y, self.dtype)
        self.sample_weight = v.check_sample_weight(sample_weight, self.X.shape[0], self.dtype)
        self.alpha = v.check_real(alpha, "alpha", low=0.0)
        self.activation = v.check_activation(activation)
        self.n_threads = v.check_n_threads(n_threads)
        self.backend, self._module = resolve_backend(backend)

    @property
    def n_features(self) -> int:
        """Number of input features d of the data.
        """
        return self.X.shape[1]

    @property
    def n_outputs(self) -> int:
        """Number of outputs k of the data (1 for a 1-D ``y``).
        """
        return self.Y.shape[1]

    def _params(self, params):
        """``params`` as the kernels need them: used as they are when they
        already are (C-contiguous, this dtype, finite), else checked and copied."""
        if not isinstance(params, (tuple, list)) or len(params) != 4:
            raise TypeError(f"params must be a Params or a 4-tuple (W1, b1, W2, b2), "
                            f"got {type(params).__name__}")
        W1_shape = np.shape(params[0])
        if len(W1_shape) != 2:
            raise ValueError(f"params.W1 must be 2-D of shape (d, h), got shape {W1_shape}")
        d, h = W1_shape
        k = self.n_outputs
        expected = ((self.n_features, h), (h,), (h, k), (k,))
        if h >= 1 and all(isinstance(p, np.ndarray) and p.dtype == self.dtype
                          and p.flags.c_contiguous and p.shape == shape
                          for p, shape in zip(params, expected)):
            for name, p in zip(Params._fields, params):
                if not np.isfinite(p).all():
                    raise ValueError(f"params.{name} contains NaN or infinity")
            return Params(*params)
        return v.check_init(params, self.n_features, h, k, self.dtype, name="params")

    def __call__(self, params: ParamsLike) -> tuple[float, Params]:
        """The loss and its gradients at ``params``.

        Parameters
        ----------
        params : Params or tuple of 4 arrays
            ``(W1, b1, W2, b2)`` of shapes (d, h), (h,), (h, k), (k,), d and k those
            of the data; used as they are when already C-contiguous arrays of the
            evaluator's dtype, else checked and copied. Never modified.

        Returns
        -------
        loss : float
            The loss L.
        gradients : Params
            ``Params(dL/dW1, dL/db1, dL/dW2, dL/db2)``: new arrays in the
            evaluator's dtype.
        """
        checked = self._params(params)
        shape = (self.X.shape[0], *checked.W1.shape)
        args = (self.X, self.Y, self.sample_weight, checked, self.activation.code, self.alpha,
                self.n_threads)
        if blas_work(self._module, *shape) < BLAS_SERIAL_WORK:
            # nothing to limit: BLAS stays serial on this call's products and
            # a backend's own pool is set by the backend when a call is parallel
            loss, grads = self._module.loss_and_gradients(*args)
        else:
            with thread_limits(self._module, self.n_threads, shape):
                loss, grads = self._module.loss_and_gradients(*args)
        return float(loss), Params(*grads)
