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
from ._validation import check_not_dask


class ShallowNetRegressor(RegressorMixin, BaseEstimator):
    """One-hidden-layer regressor trained by shallownet, as a scikit-learn estimator.

    Every parameter except ``warm_start`` is the keyword argument of
    :func:`shallownet.fit` with the same name and default; see there. It works
    in pipelines, grid searches and cross-validation like any scikit-learn
    regressor. scikit-learn is imported only when this class is first used.

    Parameters
    ----------
    hidden, activation, learning_rate, epochs, backend, random_state : see fit
        The network and how long to train it.
    optimizer, batch_size, shuffle, momentum, nesterov, beta1, beta2, epsilon : see fit
        The optimizer.
    alpha, learning_rate_schedule, power_t : see fit
        Penalty and schedule.
    early_stopping, validation_fraction, n_iter_no_change, tol : see fit
        Early stopping.
    dtype, n_threads, verbose, callback, callback_every : see fit
        Precision, threads and progress.
    warm_start : bool, default=False
        Whether :meth:`fit` starts from the previous fit's weights.

    Attributes
    ----------
    model_ : Model
        The fitted model.
    coefs_ : list of ndarray
        ``[W1, W2]``.
    intercepts_ : list of ndarray
        ``[b1, b2]``.
    loss_curve_ : ndarray
        Training loss per epoch, as :attr:`Model.loss_curve`.
    validation_curve_ : ndarray
        Validation loss per epoch with early stopping, else empty.
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
        Number of features seen by :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.

    See Also
    --------
    fit : The function this estimator calls.
    MLPRegressor : The drop-in for scikit-learn's, with its names and loss.
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
        check_not_dask(X, "X")
        check_not_dask(y, "y")
        dtype = [np.float64, np.float32] if self.dtype is None else self.dtype
        return validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True,
                             dtype=dtype)

    def fit(self, X, y, sample_weight=None):
        """Fit the network to ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n, d)
            Training inputs.
        y : array-like of shape (n,) or (n, k)
            Targets.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights with a positive sum.

        Returns
        -------
        ShallowNetRegressor
            This estimator, fitted.
        """
        X, y = self._validate(X, y, reset=True)
        kwargs = self._fit_kwargs()
        if self.warm_start and hasattr(self, "model_"):
            kwargs["init"] = self.model_.params
        self.model_ = _fit(X, y, sample_weight=sample_weight, **kwargs)
        self._publish()
        return self

    def partial_fit(self, X, y, sample_weight=None):
        """Train one epoch on ``(X, y)``.

        The first call starts a fit (without early stopping); later calls continue
        it, keeping the optimizer state.

        Parameters
        ----------
        X : array-like of shape (n, d)
            Inputs.
        y : array-like of shape (n,) or (n, k)
            Targets.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights with a positive sum.

        Returns
        -------
        ShallowNetRegressor
            This estimator.
        """
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
        """Predict the targets of ``X``.

        Parameters
        ----------
        X : array-like of shape (m, d)
            Inputs, with the features seen by :meth:`fit`.

        Returns
        -------
        ndarray of shape (m,) or (m, k)
            Predictions, 1-D when the estimator was fitted with a 1-D ``y``.
        """
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=self.model_.dtype)
        return self.model_.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
