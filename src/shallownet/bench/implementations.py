"""The implementations timed, each through its public entry point.

A factory takes ``(X, y, hidden, threads, optimizer)`` and returns
``run(epochs)``: one whole fit of ``epochs`` epochs from the same starting
point every time, returning the loss at the start of the last epoch (the MSE
at the weights after ``epochs - 1`` steps, as shallownet's
``loss_curve[-1]``), or None when the loss is not comparable.
"""

import importlib
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import shallownet

from .cases import (ACTIVATION, ADAM_BATCH, ADAM_LEARNING_RATE, BACKEND_NAMES, K, LEARNING_RATE,
                    PRODUCTS_MIN_DH, SEED, initial_params)


def _shallownet_factory(backend):
    def make(X, y, hidden, threads, optimizer="gd"):
        options = dict(hidden=hidden, activation=ACTIVATION, learning_rate=LEARNING_RATE,
                       backend=backend, random_state=SEED, dtype=X.dtype, n_threads=threads,
                       init=initial_params(X.shape[1], hidden, X.dtype))
        if optimizer == "adam":
            options.update(optimizer="adam", batch_size=ADAM_BATCH, learning_rate=ADAM_LEARNING_RATE)

        def run(epochs):
            model = shallownet.fit(X, y, epochs=epochs, **options)
            return float(model.loss_curve[-1])
        return run
    return make


def _sklearn_factory(X, y, hidden, threads, optimizer="gd"):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    n = X.shape[0]
    if optimizer == "gd":  # the seed's full-batch gradient descent
        settings = dict(solver="sgd", alpha=0.0, batch_size=n, learning_rate="constant",
                        learning_rate_init=LEARNING_RATE, shuffle=False, momentum=0.0,
                        nesterovs_momentum=False)
    else:  # scikit-learn's defaults: Adam on shuffled minibatches of 200
        settings = dict(solver="adam", batch_size=ADAM_BATCH, learning_rate_init=ADAM_LEARNING_RATE)

    def run(epochs):
        est = MLPRegressor(hidden_layer_sizes=(hidden,), activation=ACTIVATION, max_iter=epochs,
                           early_stopping=False, tol=0.0, n_iter_no_change=2**31 - 1,
                           random_state=SEED, **settings)
        with warnings.catch_warnings():
            # max_iter is reached on purpose
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        return None  # half-MSE from other initial weights: not comparable
    return run


def _torch_factory(X, y, hidden, threads, optimizer="gd"):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    d = X.shape[1]
    torch_dtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[X.dtype]
    X_t = torch.from_numpy(X)
    Y_t = torch.from_numpy(y.reshape(-1, K))
    W1, b1, W2, b2 = initial_params(d, hidden, X.dtype)

    def run(epochs):
        model = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, K)).to(torch_dtype)
        with torch.no_grad():  # nn.Linear stores the weight as (out, in)
            model[0].weight.copy_(torch.from_numpy(W1.T.copy()))
            model[0].bias.copy_(torch.from_numpy(b1))
            model[2].weight.copy_(torch.from_numpy(W2.T.copy()))
            model[2].bias.copy_(torch.from_numpy(b2))
        loss_fn = nn.MSELoss()
        if optimizer == "adam":  # shuffled minibatches, as a PyTorch user writes it
            opt = torch.optim.Adam(model.parameters(), lr=ADAM_LEARNING_RATE)
            generator = torch.Generator().manual_seed(SEED)
            for _ in range(epochs):
                order = torch.randperm(X_t.shape[0], generator=generator)
                for start in range(0, X_t.shape[0], ADAM_BATCH):
                    rows = order[start:start + ADAM_BATCH]
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(X_t[rows]), Y_t[rows])
                    loss.backward()
                    opt.step()
            return None  # its own shuffles: not comparable with shallownet's loss
        opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X_t), Y_t)
            loss.backward()
            opt.step()
        return loss.item()
    return run


FACTORIES = {name: _shallownet_factory(name) for name in BACKEND_NAMES}
FACTORIES["sklearn"] = _sklearn_factory
FACTORIES["torch"] = _torch_factory


def unavailable_reason(name):
    """None if implementation ``name`` can run here, else why not."""
    if name in BACKEND_NAMES:
        if name in shallownet.available_backends():
            return None
        # fit() names what is missing (a failed build, an import error)
        X, y = np.zeros((2, 1)), np.zeros(2)
        try:
            shallownet.fit(X, y, hidden=1, epochs=1, backend=name)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return f"backend {name!r} is not in shallownet.available_backends()"
    module = {"sklearn": "sklearn.neural_network", "torch": "torch"}[name]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"{module} cannot be imported: {exc}"
    return None


def gemm_run(dtype, size):
    """A ``run(epochs)`` that makes one ``numpy.matmul`` of (size, size)
    matrices whatever ``epochs`` is (warmed up once here), so that the
    reference GEMM can take its turn in a shape's round-robin."""
    rng = np.random.default_rng(SEED)
    A = rng.standard_normal((size, size)).astype(dtype)
    B = rng.standard_normal((size, size)).astype(dtype)
    C = np.empty((size, size), dtype=dtype)
    np.matmul(A, B, out=C)

    def run(epochs):
        np.matmul(A, B, out=C)
    return run


def products_applies(shape, optimizer):
    """Whether the products-alone floor is timed at ``shape``: full-batch
    epochs whose two d x h products are nearly all the work."""
    n, d, h = shape
    return optimizer == "gd" and d * h >= PRODUCTS_MIN_DH


def products_run(X, hidden, threads):
    """A ``run(epochs)`` of an epoch's two d x h products alone, ``X W1``
    and ``X^T DZ``, as two BLAS calls (``numpy.matmul`` into preallocated
    outputs, ``threads`` BLAS threads) of the fit's shapes: a floor for the
    epochs of the shapes where ``products_applies``. Warmed up here."""
    n, d = X.shape
    rng = np.random.default_rng(SEED)
    W1 = (rng.standard_normal((d, hidden)) / np.sqrt(d)).astype(X.dtype)
    Z = np.empty((n, hidden), X.dtype)
    grad_W1 = np.empty((d, hidden), X.dtype)

    def run(epochs):
        with threadpool_limits(limits=threads, user_api="blas"):
            for _ in range(epochs):
                np.matmul(X, W1, out=Z)
                np.matmul(X.T, Z, out=grad_W1)
    run(1)
    return run
