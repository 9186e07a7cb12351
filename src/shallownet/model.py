"""Model: the result of a fit, with predict."""

import numpy as np

from . import _validation as v
from ._activations import ACTIVATIONS
from ._params import Params


class Model:
    """A fitted network ``yhat = g(X W1 + b1) W2 + b2``.

    Attributes
    ----------
    params : Params
        (W1, b1, W2, b2) in the dtype of the fit.
    loss_curve : ndarray of shape (epochs,)
        ``loss_curve[e]`` is the training loss at the parameters epoch ``e``
        started from (entry 0 is the loss of the initial weights).
    activation, backend, learning_rate : the settings of the fit.
    """

    def __init__(self, params, loss_curve, activation, backend, one_d_y, learning_rate):
        self.params = Params(*params)
        self.loss_curve = loss_curve
        self.activation = activation
        self.backend = backend
        self.learning_rate = learning_rate
        self._one_d_y = one_d_y

    @property
    def dtype(self):
        return self.params.W1.dtype

    @property
    def n_features_in_(self):
        return self.params.W1.shape[0]

    @property
    def n_epochs_(self):
        return len(self.loss_curve)

    def predict(self, X):
        """Return yhat: shape (n,) if the fit had a 1-D y, else (n, k)."""
        X = v.check_X(X, self.dtype, n_features=self.n_features_in_)
        W1, b1, W2, b2 = self.params
        a1 = ACTIVATIONS[self.activation].g(X @ W1 + b1)
        yhat = a1 @ W2 + b2
        return yhat[:, 0] if self._one_d_y else yhat

    def __repr__(self):
        d, h = self.params.W1.shape
        k = self.params.W2.shape[1]
        return (f"Model(d={d}, hidden={h}, k={k}, activation={self.activation!r}, "
                f"backend={self.backend!r}, dtype={self.dtype.name}, epochs={self.n_epochs_}, "
                f"final_loss={self.loss_curve[-1]:.6g})")
