"""fit() and loss_and_gradients(): validate, initialise, dispatch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _validation as v
from ._params import Params, ParamsLike, init_params
from ._evaluator import Evaluator
from ._options import check_options, new_state
from ._training import Trainer
from .backends import resolve_backend
from .model import Model


def fit(X: ArrayLike, y: ArrayLike, *, hidden: int = 16, activation: str = "tanh",
        learning_rate: float = 0.01, epochs: int = 1000, backend: str = "auto",
        random_state: int | np.random.Generator | None = None, init: ParamsLike | None = None,
        optimizer: str = "gd", batch_size: int = 200, shuffle: bool = True,
        momentum: float = 0.0, nesterov: bool = False, beta1: float = 0.9,
        beta2: float = 0.999, epsilon: float = 1e-8, alpha: float = 0.0,
        learning_rate_schedule: str = "constant", power_t: float = 0.5,
        early_stopping: bool = False, validation_fraction: float = 0.1,
        n_iter_no_change: int = 10, tol: float = 1e-4, sample_weight: ArrayLike | None = None,
        dtype: DTypeLike | None = None, n_threads: int | None = None, verbose: int = 0,
        callback: Callable[[int, float, Params], object] | None = None,
        callback_every: int = 1, max_fun: int = 15000) -> Model:
    """Train a one-hidden-layer network on ``(X, y)`` and return the fitted model.

    The network is ``yhat = g(X W1 + b1) W2 + b2`` and the loss its mean squared
    error, ``L = (1/n) sum (y - yhat)**2``, plus an optional L2 penalty. The
    default is the seed's method: full-batch gradient descent,
    ``p := p - learning_rate * dL/dp`` for each of W1, b1, W2, b2, once per
    epoch. The :doc:`training guide </training>` defines every option exactly.

    Parameters
    ----------
    X : array-like of shape (n, d)
        Training inputs, finite.
    y : array-like of shape (n,) or (n, k)
        Targets, finite. A 1-D ``y`` is the case k = 1, and the model's
        predictions are then 1-D too.
    hidden : int, default=16
        Number of hidden units h.
    activation : {"tanh", "sigmoid", "logistic", "relu", "identity"}, default="tanh"
        The hidden layer's activation g ("logistic" is another name for
        "sigmoid"). The output layer is the identity.
    learning_rate : float, default=0.01
        Step size, positive (the first epoch's, with the "invscaling" schedule).
    epochs : int, default=1000
        Epochs to run; fewer when early stopping or the callback stops training.
    backend : {"auto", "numpy", "numba", "cython"}, default="auto"
        Which implementation trains. "auto" takes the first of
        :func:`available_backends`. Every backend starts from the same weights
        and takes the same steps; "numpy" is the reference.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the initial weights (unless ``init`` is given), the validation
        split and the shuffles.
    init : Params or tuple of 4 arrays, optional
        Starting weights ``(W1, b1, W2, b2)`` of shapes (d, h), (h,), (h, k),
        (k,); copied, never modified. Without it the weights are drawn as
        :doc:`the derivation </derivation>` describes (Glorot uniform), the same for every
        backend.
    optimizer : {"gd", "sgd", "adam", "lbfgs"}, default="gd"
        "gd": one batch of all rows, in order (the seed's method). "sgd" and
        "adam": minibatches of ``batch_size`` rows, in a fresh order every
        epoch when ``shuffle``. "lbfgs": SciPy's L-BFGS-B on the loss of all
        rows, ``epochs`` its iterations, ``tol`` its gradient tolerance.
    batch_size : int, default=200
        Rows per minibatch for "sgd" and "adam" (the last batch of an epoch may
        be shorter).
    shuffle : bool, default=True
        Whether "sgd" and "adam" walk the rows in a new random order each epoch.
    momentum : float, default=0.0
        Momentum of "sgd", in [0, 1).
    nesterov : bool, default=False
        Nesterov's form of momentum (needs ``momentum > 0``).
    beta1, beta2 : float, default=0.9, 0.999
        Adam's decay rates of its first and second moment estimates, in [0, 1).
    epsilon : float, default=1e-8
        Adam's term added to the denominator, positive.
    alpha : float, default=0.0
        L2 penalty: each batch's loss gains ``alpha * (|W1|^2 + |W2|^2) / W_B``,
        W_B the sum of the batch's sample weights. Biases are not penalised.
    learning_rate_schedule : {"constant", "invscaling"}, default="constant"
        "invscaling" steps with ``learning_rate / (e + 1) ** power_t`` in
        epoch e (counted from 0).
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule, non-negative.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows; stop when the validation
        loss has not fallen below its best minus ``tol`` for
        ``n_iter_no_change`` epochs, and restore the best epoch's parameters.
    validation_fraction : float, default=0.1
        Share of the rows held out by ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=10
        Epochs without improvement before ``early_stopping`` stops.
    tol : float, default=1e-4
        Improvement of the validation loss that counts, non-negative.
    sample_weight : array-like of shape (n,), optional
        Non-negative weights with a positive sum: each batch's loss is their
        weighted mean. Default: every row weighs 1.
    dtype : {None, "float32", "float64"}, default=None
        Precision of the fit. None trains a float32 ``X`` in float32 and
        anything else in float64.
    n_threads : int, optional
        Threads of the compiled loops; default: every core the process may run
        on. The results do not depend on it.
    verbose : int, default=0
        0: silent; 1 or more: a progress bar (tqdm when installed, else
        printed lines).
    callback : callable, optional
        ``callback(epoch, loss, params) -> bool``, called after every
        ``callback_every``-th epoch; returning True stops training.
    callback_every : int, default=1
        Epochs between calls of ``callback``.
    max_fun : int, default=15000
        With "lbfgs", the most evaluations of the loss and gradients.

    Returns
    -------
    Model
        The fitted network, its loss curves and its settings.

    Raises
    ------
    ValueError, TypeError
        For a bad argument, naming it. Nothing is trained.
    FloatingPointError
        When the loss stops being finite (the learning rate is too large),
        naming the epoch, instead of returning NaN weights.

    See Also
    --------
    loss_and_gradients : The loss and its gradients at given parameters.
    Model.partial_fit : One more epoch, keeping the optimizer state.
    ShallowNetRegressor : The same training behind scikit-learn's estimator interface.
    MLPRegressor : scikit-learn's MLPRegressor (its names and loss), trained by shallownet.

    Examples
    --------
    >>> import numpy as np
    >>> import shallownet
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 3))
    >>> y = np.sin(X).sum(axis=1)
    >>> model = shallownet.fit(X, y, hidden=16, learning_rate=0.05, epochs=2000,
    ...                        random_state=0)
    >>> model.predict(X).shape
    (1000,)
    """
    options = check_options(dict(
        hidden=hidden, activation=activation, learning_rate=learning_rate, epochs=epochs,
        optimizer=optimizer, batch_size=batch_size, shuffle=shuffle, momentum=momentum,
        nesterov=nesterov, beta1=beta1, beta2=beta2, epsilon=epsilon, alpha=alpha,
        learning_rate_schedule=learning_rate_schedule, power_t=power_t,
        early_stopping=early_stopping, validation_fraction=validation_fraction,
        n_iter_no_change=n_iter_no_change, tol=tol, max_fun=max_fun))
    dtype = v.check_dtype(dtype, X)
    X, Y = v.check_X_y(X, y, dtype)
    n, d = X.shape
    k = Y.shape[1]
    sample_weight = v.check_sample_weight(sample_weight, n, dtype)
    act = v.check_activation(activation)
    n_threads = v.check_n_threads(n_threads)
    verbose = v.check_verbose(verbose)
    callback_every = v.check_positive_int(callback_every, "callback_every")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    backend_name, module = resolve_backend(backend)
    rng = v.check_random_state(random_state)
    if init is not None:
        W1_shape = np.shape(init[0]) if isinstance(init, (tuple, list)) and len(init) == 4 else None
        if W1_shape is not None and len(W1_shape) == 2 and W1_shape[1] == 0:
            v.check_init(init, d, 0, k, dtype)   # raises: no hidden units
        if W1_shape is not None and len(W1_shape) == 2 and W1_shape[1] != options["hidden"]:
            raise ValueError(f"init.W1 has {W1_shape[1]} hidden units but hidden={options['hidden']}; "
                             f"pass hidden={W1_shape[1]}")
        params = v.check_init(init, d, options["hidden"], k, dtype)
    else:
        params = init_params(d, options["hidden"], k, activation, rng, dtype)
    split_rng, shuffle_rng = rng.spawn(2)

    validation = rows = None
    if options["early_stopping"]:
        n_val = int(np.ceil(options["validation_fraction"] * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"early_stopping needs at least one training and one validation row; "
                             f"with n={n} and validation_fraction={options['validation_fraction']} "
                             f"there are {n - n_val} and {n_val}")
        order = split_rng.permutation(n)
        val_rows, rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        # the validation rows are copied (a tenth of X by default); the
        # training rows are not: the trainer walks them inside X
        validation = (X[val_rows], Y[val_rows], sample_weight[val_rows])
        if not sample_weight[rows].sum(dtype=np.float64) > 0:
            raise ValueError("sample_weight is zero on every training row left by the "
                             "early-stopping split")

    trainer = Trainer(module, options, act, params, new_state(params), shuffle_rng, n_threads)
    model = Model(trainer, backend=backend_name, one_d_y=np.ndim(y) == 1)
    model._train(X, Y, sample_weight, options["epochs"], rows=rows, validation=validation,
                 callback=callback, callback_every=callback_every, verbose=verbose)
    return model


def loss_and_gradients(params: ParamsLike, X: ArrayLike, y: ArrayLike, activation: str = "tanh",
                       backend: str = "numpy", n_threads: int | None = None, *,
                       sample_weight: ArrayLike | None = None,
                       alpha: float = 0.0) -> tuple[float, Params]:
    """The loss and its gradients with respect to the four parameters.

    Computes ``L = (1/W) sum_i w_i sum_c (Y_ic - yhat_ic)^2`` (W the sum of
    the weights ``w``), plus ``alpha (|W1|^2 + |W2|^2) / W``, and its gradients,
    at ``params``, by the named backend, in the dtype of ``X`` (float32 stays
    float32, anything else is float64). The inputs are never modified. To
    evaluate many parameters on the same data, build an :class:`Evaluator`
    once: it validates the data only then.

    Parameters
    ----------
    params : Params or tuple of 4 arrays
        ``(W1, b1, W2, b2)`` of shapes (d, h), (h,), (h, k), (k,); their shapes
        fix h.
    X : array-like of shape (n, d)
        Inputs, finite.
    y : array-like of shape (n,) or (n, k)
        Targets, finite.
    activation : {"tanh", "sigmoid", "logistic", "relu", "identity"}, default="tanh"
        The hidden layer's activation.
    backend : {"numpy", "numba", "cython", "auto"}, default="numpy"
        Which implementation computes.
    n_threads : int, optional
        Threads of the compiled backends; default: every core the process may
        run on. The results do not depend on it.
    sample_weight : array-like of shape (n,), optional
        Non-negative weights with a positive sum; default: every row weighs 1.
    alpha : float, default=0.0
        L2 penalty on W1 and W2, non-negative.

    Returns
    -------
    loss : float
        The loss L.
    gradients : Params
        ``Params(dL/dW1, dL/db1, dL/dW2, dL/db2)``, shaped like ``params``.

    See Also
    --------
    Evaluator : The same on data validated once, for repeated calls.
    fit : Train a network.

    Examples
    --------
    >>> import numpy as np
    >>> import shallownet
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((50, 3)), rng.standard_normal(50)
    >>> params = shallownet.Params(rng.standard_normal((3, 4)), np.zeros(4),
    ...                            rng.standard_normal((4, 1)), np.zeros(1))
    >>> loss, grads = shallownet.loss_and_gradients(params, X, y)
    >>> grads.W1.shape
    (3, 4)
    """
    evaluator = Evaluator(X, y, activation=activation, alpha=alpha, sample_weight=sample_weight,
                          backend=backend, n_threads=n_threads)
    return evaluator(params)
