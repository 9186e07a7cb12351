"""shallownet.dask: the seed's full-batch training, data-parallel on a Dask cluster.

Full-batch gradient descent is a sum over rows. Each worker holds its row
blocks ("parts") of X, y and the sample weights, validated once where they
live, and one long-lived evaluator (a Dask Actor) that calls the compiled
kernels on them. Each evaluation returns, per part, the weighted sums
``(L_p * W_p, grads_p * W_p)`` with ``W_p`` the part's weight sum; the client
adds them up in part order, divides by ``W = sum W_p``, adds the L2 penalty
and takes the optimizer step. The result is a function of the data, its row
chunking, the initial weights and the settings only: the same bits for any
number of workers, placement or scheduling. See ``docs/scaling_out.md``.

    import shallownet.dask
    model = shallownet.dask.fit(X, y, client=client, hidden=64, epochs=200)
    yhat = shallownet.dask.predict(model, X)      # a lazy dask array
"""

import asyncio
import contextlib
import inspect
import math
import time

import numpy as np

try:
    import dask
    import dask.array as da
    import distributed
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("shallownet.dask needs dask and distributed: "
                      "pip install 'shallownet[dask]'") from exc

from . import _validation as v
from ._activations import ACTIVATIONS
from ._fit import check_options, fit as _local_fit
from ._lbfgs import packed_loss, run_lbfgs
from ._params import Params, init_params
from ._training import OPTIMIZERS, Trainer, new_state
from .backends import resolve_backend, thread_limits
from .backends.numpy import _step
from .model import Model, _progress

__all__ = ["fit", "predict"]

# the optimizers that run here: one synchronisation of the workers per epoch
# (or per L-BFGS evaluation)
FULL_BATCH = ("gd", "lbfgs")
# fit's keywords and defaults, the one place they are written
_FIT_DEFAULTS = {name: p.default for name, p in inspect.signature(_local_fit).parameters.items()
                 if p.kind is p.KEYWORD_ONLY and name not in ("optimizer", "sample_weight")}
# scikit-learn's default cap on L-BFGS evaluations
_MAX_FUN = 15000
# a call to the evaluators that has not answered after this long checks
# whether the scheduler still has their worker (then waits again)
_POLL_SECONDS = 1.0


# -- the workers' side ----------------------------------------------------------------

def _check_part(index, X, y, w, dtype, d, k, columns):
    """Validate and convert one row block where it lives; returns (X, Y, w) arrays.

    The same checks as ``shallownet.fit`` makes on the whole arrays, part by
    part, with the part named in the message; an empty part is allowed.
    """
    where = f"part {index}"
    part_columns = getattr(X, "columns", None)
    if columns is not None and part_columns is not None and list(part_columns) != columns:
        raise ValueError(f"X {where} has columns {list(part_columns)}, but X's metadata says "
                         f"{columns}: every partition must have the same columns")
    X = v._as_real_array(X, f"X {where}", dtype)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X {where} has shape {X.shape}; every part must be 2-D with {d} columns")
    Y = v._as_real_array(y, f"y {where}", dtype)
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2 or Y.shape[1] != k:
        raise ValueError(f"y {where} has shape {Y.shape}; every part must have {k} output(s)")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X {where} has {X.shape[0]} rows but y {where} has {Y.shape[0]}: "
                         "X and y must be chunked (partitioned) by the same rows")
    v._check_finite(X, f"X {where}")
    v._check_finite(Y, f"y {where}")
    if w is None:
        w = np.ones(X.shape[0], dtype=dtype)
    else:
        w = v._as_real_array(w, f"sample_weight {where}", dtype).reshape(-1)
        if w.shape[0] != X.shape[0]:
            raise ValueError(f"sample_weight {where} has {w.shape[0]} rows but X {where} has "
                             f"{X.shape[0]}: they must be chunked by the same rows")
        v._check_finite(w, f"sample_weight {where}")
        if (w < 0).any():
            raise ValueError(f"sample_weight must be non-negative ({where} is not)")
    return X, Y, w


class _Evaluator:
    """One worker's parts of a fit and the kernel calls on them (a Dask Actor).

    Lives as long as the fit; holds the validated arrays, so the data are
    read and checked once. Parts are "train" or "validation" parts.
    """

    def __init__(self, indices, roles, parts, backend, activation, n_threads):
        self.indices = list(indices)
        self.roles = list(roles)
        self.parts = list(parts)
        self.weights = [float(w.sum(dtype=np.float64)) for _, _, w in self.parts]
        self.backend = backend
        self.activation = ACTIVATIONS[activation]
        if n_threads is None:
            n_threads = distributed.get_worker().state.nthreads
        self.n_threads = n_threads
        self.module = None
        self.limits = contextlib.ExitStack()

    def describe(self):
        """[(part index, role, rows, weight sum)] of this worker's parts."""
        return [(i, role, X.shape[0], W)
                for i, role, (X, _, _), W in zip(self.indices, self.roles, self.parts, self.weights)]

    def _open(self):
        # once per fit, not per call: threadpoolctl's library scan costs
        # ~0.8 ms, a fifth of an epoch's whole overhead. Actor methods run
        # on the worker's one actor thread, so the limits hold for every call.
        if self.module is None:
            _, self.module = resolve_backend(self.backend)
            self.limits.enter_context(thread_limits(self.module, self.n_threads))

    def evaluate(self, vector, shapes, train=True, validation=False):
        """The parts' sums at the parameters packed in ``vector`` (W1, b1, W2, b2
        of ``shapes``, row-major, the fit's dtype), as two float64 arrays:
        train parts, one row each: (index, L_p * W_p, packed grads * W_p);
        validation parts: (index, data loss * W_p). One array each, not a list
        of arrays: every array is a message frame of its own (measured: 8
        parts a call took ~1 ms more per part that way)."""
        self._open()
        params = _views(vector, shapes)
        rows = [(i, role, part, W) for i, role, part, W
                in zip(self.indices, self.roles, self.parts, self.weights)
                if W > 0]   # no weight: contributes nothing (the kernel would divide by 0)
        train_rows = [r for r in rows if train and r[1] == "train"]
        val_rows = [r for r in rows if validation and r[1] == "validation"]
        sums = np.empty((len(train_rows), 2 + vector.size))
        for out, (i, _, (X, Y, w), W) in zip(sums, train_rows):
            loss, grads = self.module.loss_and_gradients(X, Y, w, params, self.activation.code,
                                                         0.0, self.n_threads)
            out[0], out[1] = i, float(loss) * W
            start = 2
            for g in grads:   # in float64 also for float32 grads
                out[start:start + g.size] = g.ravel()
                out[start:start + g.size] *= W
                start += g.size
        val = np.array([(i, _data_loss(params, X, Y, w, self.activation) * W)
                        for i, _, (X, Y, w), W in val_rows]).reshape(-1, 2)
        return sums, val

    def close(self):
        self.limits.close()
        self.parts = []


def _views(vector, shapes):
    """Params viewing a packed vector (C-contiguous pieces, no copies)."""
    arrays, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        arrays.append(vector[start:start + size].reshape(shape))
        start += size
    return Params(*arrays)


def _data_loss(params, X, Y, w, activation):
    """The data term of L on a part (no penalty), by the NumPy forward pass."""
    W1, b1, W2, b2 = params
    residual = Y - (activation.g(X @ W1 + b1) @ W2 + b2)
    return float(np.sum(w[:, None] * residual * residual, dtype=np.float64)
                 / np.sum(w, dtype=np.float64))


def _predict_block(X, W1, b1, W2, b2, activation, one_d):
    X = v._as_real_array(X, "X", W1.dtype)
    if X.ndim != 2 or X.shape[1] != W1.shape[0]:
        raise ValueError(f"X part has shape {X.shape}, but the model was fitted with "
                         f"{W1.shape[0]} features")
    v._check_finite(X, "X")
    yhat = ACTIVATIONS[activation].g(X @ W1 + b1) @ W2 + b2
    return yhat[:, 0] if one_d else yhat


# -- the client's side ----------------------------------------------------------------

def _is_dask(obj):
    return getattr(type(obj), "__dask_graph__", None) is not None


def _blocks(obj, name, two_d):
    """(delayed row blocks, rows per block or None, columns) of a dask array or
    DataFrame/Series; raises for anything else or for chunks across columns."""
    if isinstance(obj, da.Array):
        if obj.ndim not in ((2,) if two_d else (1, 2)):
            raise ValueError(f"{name} must be {'2-D' if two_d else '1-D or 2-D'}, got shape {obj.shape}")
        if obj.ndim == 2 and len(obj.chunks[1]) != 1:
            raise ValueError(f"{name} is chunked along its columns {obj.chunks[1]}; shallownet.dask "
                             f"needs row blocks holding every column: {name}.rechunk({{1: -1}})")
        blocks = obj.to_delayed().reshape(-1).tolist()
        rows = obj.chunks[0]
        rows = None if any(math.isnan(r) for r in rows) else tuple(int(r) for r in rows)
        columns = 1 if obj.ndim == 1 else obj.shape[1]
        return blocks, rows, columns, None
    if _is_dask(obj) and hasattr(obj, "npartitions") and hasattr(obj, "to_delayed"):
        names = list(obj.columns) if hasattr(obj, "columns") else None
        if two_d and names is None:
            raise ValueError(f"{name} must be 2-D: a dask DataFrame, not a Series")
        return obj.to_delayed(), None, (1 if names is None else len(names)), names
    raise TypeError(f"{name} must be a dask array or a dask DataFrame/Series, got "
                    f"{type(obj).__name__}; for data in memory use shallownet.fit")


def _split_data(X, y, sample_weight, dtype, name=""):
    """The delayed parts and their shape facts; chunk agreement checked from metadata."""
    x_blocks, x_rows, d, columns = _blocks(X, f"X{name}", two_d=True)
    y_blocks, y_rows, k, _ = _blocks(y, f"y{name}", two_d=False)
    one_d = getattr(y, "ndim", 2) == 1
    if isinstance(d, float) and math.isnan(d):
        raise ValueError(f"X{name} has an unknown number of columns; compute its chunk sizes first")
    parts = [x_blocks, y_blocks]
    labels = ["X", "y"]
    if sample_weight is not None:
        w_blocks, w_rows, _, _ = _blocks(sample_weight, f"sample_weight{name}", two_d=False)
        if getattr(sample_weight, "ndim", 1) != 1:
            raise ValueError(f"sample_weight{name} must be 1-D")
        parts.append(w_blocks)
        labels.append("sample_weight")
    else:
        w_rows = x_rows
    counts = [len(b) for b in parts]
    if len(set(counts)) != 1:
        raise ValueError(f"{', '.join(labels)}{name} have {counts} row blocks (chunks or "
                         f"partitions): they must be split into the same row blocks")
    for label, rows in (("y", y_rows), ("sample_weight", w_rows)):
        if x_rows is not None and rows is not None and rows != x_rows:
            raise ValueError(f"X{name} and {label}{name} have different row chunks "
                             f"({x_rows} and {rows}); rechunk one like the other, e.g. "
                             f"{label}.rechunk({{0: X.chunks[0]}})")
    if sample_weight is None:
        parts.append([None] * counts[0])
    return list(zip(*parts)), d, k, columns, one_d


class _Session:
    """The evaluators of one fit and the fixed-order reduction of their results."""

    def __init__(self, client, parts, roles, dtype, d, k, columns, backend, activation,
                 n_threads, timeout):
        self.client = client
        self.timeout = timeout
        self.actor_futures = []
        self.actors = []
        try:
            self._open(parts, roles, dtype, d, k, columns, backend, activation, n_threads)
        except BaseException:
            self.close()
            raise

    def _open(self, parts, roles, dtype, d, k, columns, backend, activation, n_threads):
        client = self.client
        checked = [dask.delayed(_check_part, pure=True)(i, x, y, w, dtype, d, k, columns)
                   for i, (x, y, w) in enumerate(parts)]
        futures = client.compute(checked)
        try:
            # no timeout here: a worker lost while reading or checking its
            # parts has them recomputed elsewhere by the scheduler, as usual
            distributed.wait(futures)
            for f in futures:   # the first bad part's error, as raised on its worker
                if f.status == "error":
                    f.result()
            where = client.who_has(futures)
            by_worker = {}
            for i, f in enumerate(futures):
                holders = where.get(f.key) or ()
                if not holders:
                    raise RuntimeError(f"part {i} was lost before training started")
                by_worker.setdefault(holders[0], []).append(i)
            # one evaluator per worker, beside its parts: no data moves
            for address, indices in sorted(by_worker.items()):
                self.actor_futures.append(client.submit(
                    _Evaluator, indices, [roles[i] for i in indices],
                    [futures[i] for i in indices], backend, activation, n_threads,
                    actor=True, workers=[address], allow_other_workers=False, pure=False))
            self.addresses = sorted(by_worker)
            self.actors = [self._created(f, address)
                           for f, address in zip(self.actor_futures, self.addresses)]
            described = self._call("describe")
        finally:
            del futures     # the evaluators hold the arrays now
        self.rows = {}
        self.weights = {}
        for rows in described:
            for i, role, n, W in rows:
                self.rows[i] = n
                self.weights[i] = W
        self.train = [i for i in sorted(self.rows) if roles[i] == "train"]
        self.validation = [i for i in sorted(self.rows) if roles[i] == "validation"]
        self.train_weight = math.fsum(self.weights[i] for i in self.train)
        self.validation_weight = math.fsum(self.weights[i] for i in self.validation)
        if not self.train_weight > 0:
            raise ValueError("sample_weight must have a positive sum over the training rows: "
                             "all weights are zero (or there are no rows)")
        if self.validation and not self.validation_weight > 0:
            raise ValueError("the validation rows have no rows or only zero weights")

    def _created(self, future, address):
        """The Actor handle; fails if its worker (the only one it may run on) is lost."""
        while True:
            try:
                return future.result(timeout=_POLL_SECONDS)
            except (TimeoutError, asyncio.TimeoutError):
                if address not in self.client.scheduler_info()["workers"]:
                    raise RuntimeError(f"shallownet.dask: the worker {address} was lost before "
                                       "training started; start the fit again") from None

    def _call(self, method, *args):
        """Call ``method`` on every evaluator; the results in worker order.

        Bounded: a worker that dies closes its connection, which fails the
        call at once; a worker the scheduler drops (its heartbeats stop for
        ``distributed.scheduler.worker-ttl``) fails it within a poll; with a
        ``timeout``, a call slower than that fails too."""
        calls = [getattr(actor, method)(*args) for actor in self.actors]
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        return [self._wait(call, address, future, deadline)
                for call, address, future in zip(calls, self.addresses, self.actor_futures)]

    def _wait(self, call, address, actor_future, deadline):
        while True:
            wait = _POLL_SECONDS
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            try:
                return call.result(timeout=wait)
            except (TimeoutError, asyncio.TimeoutError):  # distinct before Python 3.11
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"shallownet.dask: the worker {address} did not answer within "
                        f"timeout={self.timeout:g} s; the fit was stopped") from None
                if actor_future.status == "finished":
                    continue
                exc = RuntimeError(f"its evaluator's state is {actor_future.status!r}")
            except OSError as error:   # the connection to the worker failed
                exc = error
            raise RuntimeError(
                f"shallownet.dask: the worker {address} holding parts of the data was lost "
                f"during the fit ({type(exc).__name__}: {exc}); its parts are gone with it, so "
                f"the fit cannot go on. Start the fit again on the remaining workers.") from exc

    def evaluate(self, params, train=True, validation=False):
        """(L, float64 grads of the data term, validation data loss or None) at params,
        each summed over the parts in part order."""
        vector = np.concatenate([p.ravel() for p in params])
        shapes = [p.shape for p in params]
        sums, val_sums = {}, {}
        for train_rows, val_rows in self._call("evaluate", vector, shapes, train, validation):
            sums.update((int(row[0]), row[1:]) for row in train_rows)
            val_sums.update((int(i), loss) for i, loss in val_rows)
        loss = grads = val = None
        if train:
            # fixed order: the bits do not depend on the placement
            total = np.zeros(1 + vector.size)
            for i in self.train:
                if i in sums:
                    total += sums[i]
            total /= self.train_weight
            loss = float(total[0])
            grads = list(_views(total[1:], shapes))
        if validation:
            val = 0.0
            for i in self.validation:
                val += val_sums.get(i, 0.0)
            val /= self.validation_weight
        return loss, grads, val

    def close(self):
        """Free the evaluators and their parts on the workers."""
        with contextlib.suppress(Exception):
            self._call_quietly("close")
        # cancel, not only release: every Actor handle holds a future of its
        # key too, alive in a reference cycle until a garbage collection
        futures, self.actor_futures, self.actors = self.actor_futures, [], []
        if futures:
            with contextlib.suppress(Exception):
                self.client.cancel(futures)

    def _call_quietly(self, method):
        calls = [getattr(a, method)() for a in self.actors]
        for call in calls:
            call.result(timeout=_POLL_SECONDS)


def _penalised(params, loss, grads, alpha, weight, dtype):
    """Add ``alpha/W (|W1|^2 + |W2|^2)`` and its gradients; grads cast to ``dtype``."""
    if alpha:
        W1, _, W2, _ = params
        loss += alpha * float(np.sum(W1 * W1, dtype=np.float64) + np.sum(W2 * W2, dtype=np.float64)) / weight
        scale = 2.0 * alpha / weight
        grads[0] = grads[0] + scale * W1
        grads[2] = grads[2] + scale * W2
    return loss, Params(*(np.ascontiguousarray(g, dtype=dtype) for g in grads))


def fit(X, y, *, client=None, sample_weight=None, optimizer="gd", validation=None,
        max_fun=_MAX_FUN, timeout=None, **options):
    """Train on a Dask cluster; returns the same :class:`~shallownet.Model` as :func:`shallownet.fit`.

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
    """
    unknown = sorted(set(options) - set(_FIT_DEFAULTS))
    if unknown:
        raise TypeError(f"shallownet.dask.fit got unexpected keyword argument(s) {unknown}")
    o = dict(_FIT_DEFAULTS, **options)
    if optimizer in OPTIMIZERS and optimizer not in FULL_BATCH:
        raise ValueError(
            f"optimizer={optimizer!r} takes a step per minibatch; distributed, every minibatch "
            f"would be a synchronisation of all the workers (a round trip of milliseconds for "
            f"a few hundred rows of work). Use optimizer='gd' (with momentum/nesterov) or "
            f"'lbfgs', which synchronise once per pass over the data, or fit a sample that fits "
            f"in memory with shallownet.fit(X_sample, y_sample, optimizer={optimizer!r})")
    optimizer = v.check_choice(optimizer, "optimizer", FULL_BATCH)
    # fit's checks; "gd" stands in for "lbfgs", which fit's table does not know
    checked = check_options({key: o[key] for key in (
        "hidden", "activation", "learning_rate", "epochs", "batch_size", "shuffle", "momentum",
        "nesterov", "beta1", "beta2", "epsilon", "alpha", "learning_rate_schedule", "power_t",
        "early_stopping", "validation_fraction", "n_iter_no_change", "tol")} | {"optimizer": "gd"})
    if validation is not None:
        checked["early_stopping"] = True
    if optimizer == "lbfgs":
        if checked["early_stopping"]:
            raise ValueError("early stopping needs optimizer='gd'; L-BFGS stops on tol, "
                             "epochs (its max_iter) and max_fun")
        max_fun = v.check_positive_int(max_fun, "max_fun")
    if timeout is not None:
        timeout = v.check_real(timeout, "timeout", low=0.0, low_open=True)
    dtype = v.check_dtype(o["dtype"], X)
    act = v.check_activation(checked["activation"])
    n_threads = None if o["n_threads"] is None else v.check_n_threads(o["n_threads"])
    verbose = v.check_verbose(o["verbose"])
    callback, callback_every = o["callback"], v.check_positive_int(o["callback_every"], "callback_every")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    backend_name, module = resolve_backend(o["backend"])

    parts, d, k, columns, one_d = _split_data(X, y, sample_weight, dtype)
    roles = ["train"] * len(parts)
    rng = v.check_random_state(o["random_state"])
    h = checked["hidden"]
    if o["init"] is not None:
        params = v.check_init(o["init"], d, h, k, dtype)
    else:
        params = init_params(d, h, k, checked["activation"], rng, dtype)
    split_rng, shuffle_rng = rng.spawn(2)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
            raise TypeError("validation must be (X_val, y_val) or (X_val, y_val, w_val)")
        val_parts, d_val, k_val, _, _ = _split_data(*validation, *(None,) * (3 - len(validation)),
                                                    dtype, name="_val")
        if (d_val, k_val) != (d, k):
            raise ValueError(f"validation has {d_val} features and {k_val} outputs; X, y have {d}, {k}")
        parts = parts + val_parts
        roles = roles + ["validation"] * len(val_parts)
    elif checked["early_stopping"]:
        n_val = math.ceil(checked["validation_fraction"] * len(parts))
        if n_val < 1 or len(parts) - n_val < 1:
            raise ValueError(f"early_stopping holds out whole row blocks: with {len(parts)} blocks "
                             f"and validation_fraction={checked['validation_fraction']} there are "
                             f"{len(parts) - n_val} training and {n_val} validation blocks; "
                             "rechunk X and y into more blocks or pass validation=(X_val, y_val)")
        for i in split_rng.permutation(len(parts))[:n_val]:
            roles[i] = "validation"

    if client is None:
        try:
            client = distributed.get_client()
        except ValueError:
            raise ValueError("shallownet.dask.fit needs a Dask client: pass client=... or "
                             "create a distributed.Client first") from None
    options_out = dict(checked, optimizer=optimizer)
    if optimizer == "lbfgs":
        options_out["max_fun"] = max_fun
    trainer = Trainer(module, options_out, act, params, new_state(params), shuffle_rng,
                      v.check_n_threads(o["n_threads"]))
    model = Model(trainer, backend=backend_name, one_d_y=one_d)
    session = _Session(client, parts, roles, dtype, d, k, columns, backend_name,
                       checked["activation"], n_threads, timeout)
    progress, close_progress = _progress(verbose, checked["epochs"])
    try:
        if optimizer == "lbfgs":
            _run_lbfgs(session, model, max_fun, callback, callback_every, progress)
        else:
            _run_gd(session, model, callback, callback_every, progress)
    finally:
        close_progress()
        session.close()
    return model


def _run_gd(session, model, callback, callback_every, progress):
    """Full-batch gradient descent in the client, as ``Trainer.run`` runs it."""
    trainer = model._trainer
    o = trainer.options
    params, state = trainer.params, trainer.state
    dtype = params.W1.dtype
    epochs = o["epochs"]
    n_train = max(1, sum(session.rows[i] for i in session.train))
    spec = trainer._spec(n_train, False, n_train)
    validating = bool(session.validation)
    losses, val_losses = [], []
    best = (math.inf, None, 0)
    no_improvement = 0

    def record_validation(val):
        """Bookkeeping after an epoch's step; True to stop."""
        nonlocal best, no_improvement
        val_losses.append(val)
        if val < best[0] - o["tol"]:
            best = (val, Params(*(p.copy() for p in params)), trainer.epochs_done)
            no_improvement = 0
        else:
            no_improvement += 1
        return no_improvement >= o["n_iter_no_change"]

    stopped = False
    pending = False    # the validation loss of the last epoch is still to be taken
    for done in range(epochs):
        # the validation loss after the previous step rides on this epoch's call
        loss, grads, val = session.evaluate(params, train=True, validation=pending)
        if pending:
            pending = False
            if record_validation(val):
                stopped = True
                break
        loss, grads = _penalised(params, loss, grads, o["alpha"], session.train_weight, dtype)
        losses.append(loss)
        if not np.isfinite(loss):
            trainer._diverged(f"the loss became {loss:g} at epoch {trainer.epochs_done}")
        clock = trainer.epochs_done * spec.schedule_scale + 1
        lr = dtype.type(spec.learning_rate / clock ** spec.power_t)
        state.t[0] += 1
        with np.errstate(over="ignore", invalid="ignore"):
            _step(params, grads, state, spec, lr)
        trainer.epochs_done += 1
        pending = validating
        if progress is not None:
            progress(done + 1, loss)
        if (callback is not None and (done + 1) % callback_every == 0
                and bool(callback(trainer.epochs_done - 1, float(loss), params))):
            break
    if pending and not stopped:
        record_validation(session.evaluate(params, train=False, validation=True)[2])
    if losses and not all(np.isfinite(p).all() for p in params):
        trainer._diverged(f"a parameter became non-finite in the last step of epoch "
                          f"{trainer.epochs_done - 1}")
    if validating and best[1] is not None:
        for p, b in zip(params, best[1]):
            p[...] = b
        trainer.best_epoch = best[2] - 1
    model.loss_curve = np.asarray(losses, dtype=np.float64)
    model.validation_curve = np.asarray(val_losses, dtype=np.float64)


def _run_lbfgs(session, model, max_fun, callback, callback_every, progress):
    """L-BFGS-B in the client; each evaluation is one call to every worker."""
    trainer = model._trainer
    o = trainer.options
    dtype = trainer.params.W1.dtype

    def evaluate(params):
        loss, grads, _ = session.evaluate(params)
        return _penalised(params, loss, grads, o["alpha"], session.train_weight, dtype)

    def on_iteration(iteration, loss, params):
        if progress is not None:
            progress(iteration + 1, loss)
        return (callback is not None and (iteration + 1) % callback_every == 0
                and bool(callback(iteration, loss, params)))

    result = run_lbfgs(packed_loss(evaluate, trainer.params), trainer.params,
                       max_iter=o["epochs"], max_fun=max_fun,
                       tol=o["tol"], callback=on_iteration)
    for p, new in zip(trainer.params, result.params):
        p[...] = new
    trainer.epochs_done += result.n_iter
    # the loss after each iteration (for "gd": before each epoch's step)
    model.loss_curve = result.loss_curve
    model.n_fun_ = result.n_fun
    model.converged_ = result.converged


def predict(model, X):
    """Predict lazily on a dask array or DataFrame.

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
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a shallownet.Model, got {type(model).__name__}")
    blocks, rows, d, _ = _blocks(X, "X", two_d=True)
    if d != model.n_features_in_:
        raise ValueError(f"X has {d} features, but the model was fitted with {model.n_features_in_}")
    params = tuple(model.params)
    k = params[2].shape[1]
    one_d = model._one_d_y
    token = dask.base.tokenize(*params, model.activation)
    shared = dask.delayed(params, name=f"shallownet-params-{token}", traverse=False)
    if isinstance(X, da.Array):
        arrays = X
    else:
        arrays = X.to_dask_array()
    out_chunks = (arrays.chunks[0],) if one_d else (arrays.chunks[0], (k,))
    return da.map_blocks(_predict_params, arrays, shared, model.activation, one_d,
                         dtype=model.dtype, chunks=out_chunks, drop_axis=1 if one_d else None,
                         meta=np.empty((0,) if one_d else (0, 0), dtype=model.dtype))


def _predict_params(X, params, activation, one_d):
    return _predict_block(X, *params, activation, one_d)
