"""numpydoc docstrings for public names in modules other branches were
editing when the documentation was set up.

TEMPORARY. Each entry replaces, in the built documentation only, the
docstring of one public name, and only while that name's docstring in the
source is still the one this entry was written against (its SHA-1 below).
To retire an entry: paste its text as the docstring in the source file named
in the entry's comment (indented as a docstring), and delete the entry; the
hash check makes a forgotten entry inert. When the dict is empty, delete
this file and the ``pending_docstrings`` lines in ``conf.py``.
``python docs/_ext/pending_docstrings.py`` prints which entries still apply.
"""

import hashlib
import inspect

PENDING = {
    # src/shallownet/_fit.py
    "shallownet._fit.fit": ("9e1de9900281", '''
Train a one-hidden-layer network on ``(X, y)`` and return the fitted model.

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
optimizer : {"gd", "sgd", "adam"}, default="gd"
    "gd": one batch of all rows, in order (the seed's method). "sgd" and
    "adam": minibatches of ``batch_size`` rows, in a fresh order every
    epoch when ``shuffle``.
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
'''),
    "shallownet._fit.loss_and_gradients": ("9d4111e6bd36", '''
The loss and its gradients with respect to the four parameters.

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
'''),
    # src/shallownet/model.py
    "shallownet.model.Model": ("52dc7f1db852", '''
A fitted network ``yhat = g(X W1 + b1) W2 + b2``.

Returned by :func:`fit` and :func:`load`; not meant to be constructed
directly. A model predicts, trains on (:meth:`partial_fit`), saves itself
to a portable file (:meth:`save`) and pickles.

Attributes
----------
params : Params
    ``(W1, b1, W2, b2)`` in the dtype of the fit.
loss_curve : ndarray of float64
    Training loss, one entry per epoch run. For "gd", the loss at the parameters the epoch
    started from (entry 0 is the loss of the initial weights); for the
    minibatch optimizers, the weighted mean of the epoch's batch losses.
validation_curve : ndarray of float64
    With early stopping, the validation loss after each epoch; else empty.
n_epochs_ : int
    Epochs run, fewer than asked when training stopped early.
best_epoch_ : int or None
    With early stopping, the epoch whose parameters were restored.
n_features_in_ : int
    Number of input features d.
dtype : numpy.dtype
    float32 or float64, the precision of the fit.
backend : str
    The backend that trains and that :meth:`partial_fit` uses.
activation : str
    The hidden layer's activation.
learning_rate : float
    The learning rate of the fit.
options : dict
    Every training option of the fit, validated.
'''),
    "shallownet.model.Model.predict": ("d6e50295b1ee", '''
Predict the targets of ``X``.

Parameters
----------
X : array-like of shape (m, d)
    Inputs, finite; converted to the model's dtype.

Returns
-------
yhat : ndarray of shape (m,) or (m, k)
    1-D if the model was fitted with a 1-D ``y``, else 2-D.
'''),
    "shallownet.model.Model.partial_fit": ("2ab66d38ff6e", '''
Train one more epoch on ``(X, y)``, keeping the optimizer state.

The epoch is the fit's next one (for the learning-rate schedule and Adam's
step count), with the fit's settings and backend, and goes on from the
fit's optimizer state and shuffling generator. Early stopping does not
apply.

Parameters
----------
X : array-like of shape (n, d)
    Inputs, finite, with the fit's number of features.
y : array-like of shape (n,) or (n, k)
    Targets, finite, with the fit's number of outputs.
sample_weight : array-like of shape (n,), optional
    Non-negative weights with a positive sum; default: every row weighs 1.

Returns
-------
Model
    This model, updated in place.
'''),
    "shallownet.model.Model.save": ("3fa918289ffc", '''
Write the model to a portable ``.npz`` file, without pickles.

The file holds the parameters, the optimizer state, the curves, the
settings and the package version; :func:`load` reads it back and training
goes on where it stopped.

Parameters
----------
path : str or path-like
    Where to write.
'''),
    "shallownet.model.load": ("96f9c5fef3f9", '''
Read a model written by :meth:`Model.save`.

The file is treated as untrusted: only the members a model has are read,
each checked against its ``.npy`` header and the model's shapes before its
data is decompressed. (A pickled :class:`Model` is different: unpickling an
untrusted file runs arbitrary code.)

Parameters
----------
path : str or path-like
    The file to read.
backend : str, optional
    The backend the loaded model trains with; default: the one it was saved
    with.
max_bytes : int, default=2**32
    The most bytes the file's members may declare in all, before any is
    decompressed.

Returns
-------
Model
    The model, ready to predict and to train on.

Raises
------
ValueError
    When the file is not a shallownet model file, is damaged or malformed
    (saying what is wrong), declares more than ``max_bytes``, or was
    written in another file format version.
'''),
    # src/shallownet/_evaluator.py
    "shallownet._evaluator.Evaluator.__call__": ("754b32d3a642", '''
The loss and its gradients at ``params``.

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
'''),
    "shallownet._evaluator.Evaluator.n_features": ("none", '''
Number of input features d of the data.
'''),
    "shallownet._evaluator.Evaluator.n_outputs": ("none", '''
Number of outputs k of the data (1 for a 1-D ``y``).
'''),
    # src/shallownet/estimator.py (ShallowNetRegressor, MLPRegressor before the skl branch)
    "shallownet.estimator.ShallowNetRegressor": ("a447766662b4", '''
One-hidden-layer regressor trained by shallownet, as a scikit-learn estimator.

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
'''),
    "shallownet.estimator.ShallowNetRegressor.fit": ("none", '''
Fit the network to ``(X, y)``.

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
'''),
    "shallownet.estimator.ShallowNetRegressor.partial_fit": ("75bade00bb90", '''
Train one epoch on ``(X, y)``.

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
'''),
    "shallownet.estimator.ShallowNetRegressor.predict": ("none", '''
Predict the targets of ``X``.

Parameters
----------
X : array-like of shape (m, d)
    Inputs, with the features seen by :meth:`fit`.

Returns
-------
ndarray of shape (m,) or (m, k)
    Predictions, 1-D when the estimator was fitted with a 1-D ``y``.
'''),
    # src/shallownet/dask.py, as on the dask branch at 37bcd78 (not merged when
    # this was written); its docstring there fails the -W build
    "shallownet.dask.fit": ("38d3275ef5c3", '''
Train on a Dask cluster; returns the same :class:`~shallownet.Model` as :func:`shallownet.fit`.

The data stay on the workers, validated once where they live; each worker's
evaluator computes the loss and gradients of its row blocks with the
compiled kernels, and the client adds them up in block order and takes the
optimizer step.

Parameters
----------
X : dask array of shape (n, d) or dask DataFrame
    Inputs, chunked by rows only.
y : dask array of shape (n,) or (n, k), or dask Series or DataFrame
    Targets, in the same row blocks (chunks or partitions) as ``X``.
client : distributed.Client, optional
    The cluster's client; default: the current one.
sample_weight : dask array or Series of shape (n,), optional
    Non-negative weights, in the same row blocks as ``X``.
optimizer : {"gd", "lbfgs"}, default="gd"
    "gd": full-batch gradient descent (with ``momentum``, ``nesterov``,
    ``learning_rate``, ``learning_rate_schedule``). "lbfgs": SciPy's
    L-BFGS-B, with ``epochs`` as its ``max_iter``, ``max_fun`` its cap on
    evaluations and ``tol`` its ``gtol``. Minibatch optimizers are refused:
    each minibatch would be a round trip to every worker.
validation : tuple of dask collections, optional
    ``(X_val, y_val)`` or ``(X_val, y_val, w_val)`` for early stopping
    (implies ``early_stopping=True``). Without it, ``early_stopping=True``
    holds out ``ceil(validation_fraction * parts)`` whole row blocks, chosen
    by ``random_state``.
max_fun : int, default=15000
    With "lbfgs", the most evaluations of the loss.
timeout : float, optional
    Seconds an evaluation of every part may take before the fit fails;
    default: no limit. A worker that dies fails the fit at once.
**options
    :func:`shallownet.fit`'s keywords (``hidden``, ``activation``,
    ``epochs``, ``alpha``, ``random_state``, ``init``, ``dtype``,
    ``backend``, ``callback``, ``verbose``, ...). ``n_threads`` is the
    threads of each evaluator (default: its worker's ``nthreads``); the
    results do not depend on it.

Returns
-------
Model
    The fitted model, as :func:`shallownet.fit` returns it.

Notes
-----
The result depends only on the data, its row blocks, the initial weights
and the settings (not on the workers or the placement), and equals
:func:`shallownet.fit` on the gathered data to rounding (the guide page
on scaling out gives the figures).
'''),
    "shallownet.dask.predict": ("06fa9cb15efa", '''
Predict lazily on a dask array or DataFrame.

Parameters
----------
model : Model
    A fitted model, from :func:`shallownet.fit` or :func:`fit`.
X : dask array of shape (n, d) or dask DataFrame
    Inputs, chunked by rows only.

Returns
-------
dask array of shape (n,) or (n, k)
    The predictions, lazy: 1-D when the model was fitted on a 1-D ``y``. The
    parameters enter the graph once, as one key every block depends on.
'''),
}


def _digest(doc):
    return "none" if not doc else hashlib.sha1(inspect.cleandoc(doc).encode()).hexdigest()[:12]


def _replace(app, what, name, obj, options, lines):
    if isinstance(obj, property):
        obj = obj.fget   # a property's getter carries its name and docstring
    key = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    entry = PENDING.get(key)
    if entry is None:
        return
    digest, text = entry
    if _digest(getattr(obj, "__doc__", None)) != digest:
        return  # the source's docstring changed since: it is rendered as it is
    lines[:] = text.strip("\n").splitlines()


def setup(app):
    # before numpydoc (priority 500) turns the docstring into reST
    app.connect("autodoc-process-docstring", _replace, priority=100)
    return {"parallel_read_safe": True}


def _status():
    """Print, for each entry, whether it still applies to the importable package."""
    import importlib
    for key, (digest, _) in PENDING.items():
        parts = key.split(".")
        obj = None
        for i in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                obj = None
            break
        if obj is None:
            state = "not importable"
        else:
            obj = obj.fget if isinstance(obj, property) else obj
            state = "applies" if _digest(obj.__doc__) == digest else "inert: the source changed"
        print(f"{key:50} {state}")


if __name__ == "__main__":
    _status()
