"""ShallowNetRegressor: shallownet's fit behind scikit-learn's estimator interface.

Its parameters are ``shallownet.fit``'s names and its loss is shallownet's
(the seed's mean squared error). The drop-in for scikit-learn's
MLPRegressor, with scikit-learn's names and loss, is
``shallownet.neural_network.MLPRegressor``: the two are named apart so
that a class called MLPRegressor always takes scikit-learn's parameters.
scikit-learn is needed only here, and only when this class is used.
"""

import numpy as np

try:
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("shallownet.ShallowNetRegressor needs scikit-learn: "
                      "pip install scikit-learn") from exc

from ._fit import fit as _fit


class ShallowNetRegressor(RegressorMixin, BaseEstimator):
    """One-hidden-layer regressor trained by shallownet's compiled loops.

    Every parameter is the keyword argument of ``shallownet.fit`` with the
    same name and default; ``warm_start`` makes ``fit`` start from the
    previous solution. Fitted attributes: ``model_`` (a ``shallownet.Model``),
    ``coefs_``, ``intercepts_``, ``loss_curve_``, ``validation_curve_``,
    ``n_iter_``, ``n_features_in_`` and, for DataFrames, ``feature_names_in_``.
    """

    def __init__(self, hidden=16, activation="tanh", learning_rate=0.01, epochs=1000,
                 backend="auto", random_state=None, optimizer="gd", batch_size=200,
                 shuffle=True, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999,
                 epsilon=1e-8, alpha=0.0, learning_rate_schedule="constant", power_t=0.5,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 dtype=None, n_threads=None, verbose=0, callback=None, callback_every=1,
                 warm_start=False):
        self.hidden = hidden
        self.activation = activation
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.backend = backend
        self.random_state = random_state
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.alpha = alpha
        self.learning_rate_schedule = learning_rate_schedule
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose
        self.callback = callback
        self.callback_every = callback_every
        self.warm_start = warm_start

    def _fit_kwargs(self):
        params = self.get_params()
        params.pop("warm_start")
        return params

    def _validate(self, X, y, reset):
        dtype = [np.float64, np.float32] if self.dtype is None else self.dtype
        return validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True,
                             dtype=dtype)

    def fit(self, X, y, sample_weight=None):
        X, y = self._validate(X, y, reset=True)
        kwargs = self._fit_kwargs()
        if self.warm_start and hasattr(self, "model_"):
            kwargs["init"] = self.model_.params
        self.model_ = _fit(X, y, sample_weight=sample_weight, **kwargs)
        self._publish()
        return self

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on (X, y); the first call starts a fit, later ones continue it."""
        if not hasattr(self, "model_"):
            X, y = self._validate(X, y, reset=True)
            kwargs = self._fit_kwargs()
            kwargs.update(epochs=1, early_stopping=False)
            self.model_ = _fit(X, y, sample_weight=sample_weight, **kwargs)
        else:
            X, y = self._validate(X, y, reset=False)
            self.model_.partial_fit(X, y, sample_weight=sample_weight)
        self._publish()
        return self

    def _publish(self):
        W1, b1, W2, b2 = self.model_.params
        self.coefs_ = [W1, W2]
        self.intercepts_ = [b1, b2]
        self.loss_curve_ = self.model_.loss_curve
        self.validation_curve_ = self.model_.validation_curve
        self.n_iter_ = self.model_.n_epochs_

    def predict(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=self.model_.dtype)
        return self.model_.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
