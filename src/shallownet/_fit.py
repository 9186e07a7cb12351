"""fit() and loss_and_gradients(): validate, initialise, dispatch."""

import numpy as np

from . import _validation as v
from ._params import Params, init_params
from ._evaluator import Evaluator
from ._options import check_options, new_state
from ._training import Trainer
from .backends import resolve_backend
from .model import Model


def fit(X, y, *, hidden=16, activation="tanh", learning_rate=0.01, epochs=1000,
        backend="auto", random_state=None, init=None, optimizer="gd", batch_size=200,
        shuffle=True, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999, epsilon=1e-8,
        alpha=0.0, learning_rate_schedule="constant", power_t=0.5, early_stopping=False,
        validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, sample_weight=None,
        dtype=None, n_threads=None, verbose=0, callback=None, callback_every=1, max_fun=15000):
    """Train ``yhat = g(X W1 + b1) W2 + b2`` on ``L = mean (y - yhat)^2``.

    The default is the seed's method: full-batch gradient descent
    ``p := p - learning_rate * dL/dp`` for ``epochs`` epochs. Every option is
    described in ``docs/training.md``; in short:

    X : array-like (n, d); y : array-like (n,) or (n, k).
    hidden : int, hidden units h. activation : "tanh", "sigmoid" ("logistic"),
        "relu" or "identity".
    optimizer : "gd" (full batch, rows in order), "sgd" (minibatches of
        ``batch_size``, reshuffled each epoch when ``shuffle``; ``momentum``,
        ``nesterov``), or "adam" (minibatches; ``beta1``, ``beta2``, ``epsilon``).
    alpha : L2 penalty, ``L += alpha * (|W1|^2 + |W2|^2) / sum(weights of the batch)``.
    learning_rate_schedule : "constant", or "invscaling": epoch e steps with
        ``learning_rate / (e + 1) ** power_t``.
    early_stopping : hold out ``validation_fraction`` of the rows; stop when the
        validation loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and restore the best parameters.
    sample_weight : array-like (n,), non-negative: a weighted mean in the loss.
    backend : "auto", "numpy", "numba" or "cython". random_state : seeds the
        initial weights (unless ``init``), the validation split and the shuffling.
    init : Params or 4-tuple (W1, b1, W2, b2) of starting weights, copied.
    dtype : None (float32 X stays float32, else float64), "float32" or "float64".
    n_threads : threads of the compiled loops (default: all usable cores);
        results do not depend on it.
    verbose : 0, or 1 for a progress bar (tqdm when installed, else printed lines).
    callback : ``callback(epoch, loss, params) -> bool`` called after every
        ``callback_every``-th epoch; True stops training.

    Returns a Model. Raises ValueError/TypeError naming a bad argument, and
    FloatingPointError when the loss stops being finite.
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


def loss_and_gradients(params, X, y, activation="tanh", backend="numpy", n_threads=None,
                       *, sample_weight=None, alpha=0.0):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``.

    ``params`` is a Params or 4-tuple; its shapes fix h. Computed by the named
    backend in the dtype of X (float32 X stays float32), never modifying the
    inputs. To evaluate many parameters on the same data, build a
    ``shallownet.Evaluator`` once: it validates the data only then.
    """
    evaluator = Evaluator(X, y, activation=activation, alpha=alpha, sample_weight=sample_weight,
                          backend=backend, n_threads=n_threads)
    return evaluator(params)
