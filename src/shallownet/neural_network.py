"""A drop-in for scikit-learn's MLPRegressor, trained by shallownet's kernels.

``from shallownet.neural_network import MLPRegressor`` in place of
``from sklearn.neural_network import MLPRegressor`` gives the same model
for the same ``random_state``: the class is scikit-learn's estimator with
its training replaced, where shallownet's kernels can run it, by an
equivalent one:

- scikit-learn's loss is half of shallownet's (``0.5 * mean squared error
  + alpha / (2 n) ||W||^2`` against ``mean squared error + alpha / n
  ||W||^2``), so its gradients are half of shallownet's: SGD runs with the
  learning rate halved, Adam with epsilon doubled and added before the bias
  correction (``TrainSpec.epsilon_before_correction``), and L-BFGS
  minimises the loss and gradients scaled by one half.
- Every random draw comes from scikit-learn's own generator in its order:
  the initial weights (scikit-learn's ``_initialize``), the validation split
  (``train_test_split`` of the row indices), each epoch's shuffle
  (``sklearn.utils.shuffle`` of the sample indices), handed to the backend
  as its row ``orders``.
- ``invscaling`` counts samples seen (``TrainSpec.schedule_scale``); the
  bookkeeping after each epoch (``loss_curve_``, ``t_``, the stopping rules,
  ``adaptive``, early stopping's best parameters, the warnings) is
  scikit-learn's own code, replayed on the losses the backend wrote.

Whatever the kernels cannot run falls back to scikit-learn's training
(``_fallback_reason``); ``engine_`` names what ran. See ``docs/dropin.md``.
"""

import functools
import warnings
from numbers import Integral

import numpy as np
import scipy.sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor as _SklearnMLPRegressor
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight

from ._activations import ACTIVATIONS
from ._lbfgs import minimize_packed, pack
from ._params import Params
from ._options import ADAM, SGD, OptimizerState, TrainSpec
from ._validation import check_n_threads, check_not_dask
from .backends import BACKENDS, open_packed_loss, resolve_backend, thread_limits

__all__ = ["MLPRegressor"]

SKLEARN_ENGINE = "scikit-learn"
_NOT_FINITE_MESSAGE = ("Solver produced non-finite parameter weights. The input data may"
                       " contain large values and need to be preprocessed.")


def _hidden_units(hidden_layer_sizes):
    """h for one hidden layer of h > 0 units, else None."""
    sizes = (list(hidden_layer_sizes) if hasattr(hidden_layer_sizes, "__iter__")
             else [hidden_layer_sizes])
    if len(sizes) != 1 or not isinstance(sizes[0], Integral) or sizes[0] <= 0:
        return None
    return int(sizes[0])


class MLPRegressor(_SklearnMLPRegressor):
    """scikit-learn's MLPRegressor, trained by shallownet's backends.

    The parameters are exactly those of the installed scikit-learn's
    MLPRegressor, with the same defaults and meaning, plus:

    backend : "auto", "numpy", "numba" or "cython" (default "auto": the
        fastest backend that runs scikit-learn's schedule and Adam forms).
    n_threads : threads of the compiled loops (default: all usable cores);
        results do not depend on it.

    Fitted attributes are scikit-learn's, plus ``engine_``:
    ``"shallownet:<backend>"`` when shallownet's kernels trained the model,
    ``"scikit-learn"`` when the configuration fell back (several hidden
    layers, ``loss="poisson"``, sparse X, sample weights with the stochastic
    solvers); ``fallback_reason_`` says why (None when accelerated).
    """

    _parameter_constraints: dict = {
        **_SklearnMLPRegressor._parameter_constraints,
        "backend": [StrOptions({"auto", *BACKENDS})],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="auto",
        n_threads=None,
    ):
        super().__init__(
            loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            solver=solver, alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun)
        self.backend = backend
        self.n_threads = n_threads

    # -- which engine ------------------------------------------------------

    def _fallback_reason(self, X, sample_weight, incremental):
        """Why scikit-learn's own training must run, or None."""
        if self.loss != "squared_error":
            return f"loss={self.loss!r}"
        if _hidden_units(self.hidden_layer_sizes) is None:
            return f"hidden_layer_sizes={self.hidden_layer_sizes!r} is not one hidden layer"
        if scipy.sparse.issparse(X):
            return "sparse X"
        if sample_weight is not None and self.solver != "lbfgs":
            # scikit-learn weights each batch's loss by its row count, not its weight sum
            return "sample_weight with a stochastic solver"
        continuing = (incremental or self.warm_start) and hasattr(self, "coefs_")
        if continuing and len(self.coefs_) != 2:
            return "continuing a fit with several hidden layers"
        return None

    def _backend(self):
        """``(name, module)`` of the backend to train with. L-BFGS needs only
        its loss and gradients; SGD and Adam need its training loop to run
        scikit-learn's forms (the TrainSpec fields a probe checks)."""
        usable = (lambda name: True) if self.solver == "lbfgs" else _runs_sklearn_forms
        if self.backend == "auto":
            for name in _available_in_order():
                if usable(name):
                    return name, resolve_backend(name)[1]
            return resolve_backend("numpy")
        name, module = resolve_backend(self.backend)
        if not usable(name):
            raise ValueError(
                f"backend {name!r} in this install does not run scikit-learn's learning-rate "
                f"schedule and Adam forms (TrainSpec.schedule_scale, epsilon_before_correction, "
                f"row subsets); use backend='auto' or 'numpy'")
        return name, module

    # -- fitting -----------------------------------------------------------

    def _sklearn_fit(self, reason, X, y, sample_weight, incremental):
        self.engine_ = SKLEARN_ENGINE
        self.fallback_reason_ = reason
        return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)

    def _fit(self, X, y, sample_weight=None, incremental=False):
        for value, name in ((X, "X"), (y, "y"), (sample_weight, "sample_weight")):
            check_not_dask(value, name)
        reason = self._fallback_reason(X, sample_weight, incremental)
        if reason is not None:
            return self._sklearn_fit(reason, X, y, sample_weight, incremental)
        backend_name, module = self._backend()
        n_threads = check_n_threads(self.n_threads)

        hidden = _hidden_units(self.hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X_given, y_given = X, y
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            w = _check_sample_weight(sample_weight, X)
            if (w < 0).any() or not w.sum() > 0:
                # shallownet's loss takes non-negative weights with a positive sum;
                # nothing has been drawn yet, so scikit-learn starts afresh
                return self._sklearn_fit("sample_weight with negative values or a zero sum",
                                         X_given, y_given, sample_weight, incremental)
            sample_weight = w
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features, hidden, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)  # scikit-learn's draws, in its order

        # the arrays the kernels read, validated once for the whole fit. With
        # float32 X, scikit-learn's L-BFGS mixes float32 and float64 (its
        # targets, gradients and SciPy's iterates are float64): float64 kernels
        # come closest (docs/dropin.md)
        X = np.ascontiguousarray(X, dtype=np.float64 if self.solver == "lbfgs" else None)
        Y = np.ascontiguousarray(y, dtype=X.dtype)
        weights = (np.ones(n_samples, dtype=X.dtype) if sample_weight is None
                   else np.ascontiguousarray(sample_weight, dtype=X.dtype))
        # said before training: a fit that diverges and raises still tells what ran
        self.engine_ = f"shallownet:{backend_name}"
        self.fallback_reason_ = None
        run = _Run(self, module, n_threads, X, Y, weights, y)
        if self.solver == "lbfgs":
            run.lbfgs()
        else:
            run.stochastic(incremental)
        if not all(np.isfinite(w).all() for w in (*self.coefs_, *self.intercepts_)):
            raise ValueError(_NOT_FINITE_MESSAGE)
        return self


class _Run:
    """One call of fit or partial_fit on shallownet's kernels."""

    def __init__(self, est, module, n_threads, X, Y, weights, y):
        self.est = est
        self.y = y          # as scikit-learn validated it: its validation scores read it
        self.module = module
        self.n_threads = n_threads
        self.X, self.Y, self.weights = X, Y, weights
        self.activation = ACTIVATIONS[est.activation].code
        self.k = Y.shape[1]

    def sklearn_loss(self, loss, penalty_mean=0.0):
        """scikit-learn's loss from shallownet's: its data term is half and
        averaged over the outputs too, its penalty half. ``penalty_mean`` is
        ``alpha * ||W||^2 / rows`` inside ``loss`` (it is not averaged over outputs)."""
        if self.k == 1:
            return 0.5 * loss
        return 0.5 * (loss - penalty_mean) / self.k + 0.5 * penalty_mean

    # -- L-BFGS --------------------------------------------------------------

    def lbfgs(self):
        est, X, Y, w = self.est, self.X, self.Y, self.weights
        alpha, weight_sum = float(est.alpha), float(w.sum(dtype=np.float64))
        module, n_threads, k = self.module, self.n_threads, self.k
        d, h = est.coefs_[0].shape
        n_weights = d * h + h * k        # W1 and W2 lead the packed vector
        # one evaluation per SciPy call on arrays validated once, its plan and
        # buffers kept for the run: only the packed vectors cross per call
        loss_at = open_packed_loss(module, X, Y, w, h, self.activation, alpha, n_threads)

        # packed in the parameters' dtype, as scikit-learn packs them: SciPy
        # then evaluates at points of that dtype (float32 after a float32
        # initialisation), while X (float64 here) keeps the rest in float64
        start = (est.coefs_[0], est.intercepts_[0], est.coefs_[1], est.intercepts_[1])
        start = pack(Params(*(np.asarray(p, dtype=np.result_type(*start)) for p in start)))

        def evaluate(x):
            # the point in the start's dtype (scikit-learn's forward pass casts
            # it so), then in X's (float64: float32 points convert exactly)
            x = np.ascontiguousarray(np.asarray(x, dtype=start.dtype), dtype=X.dtype)
            grad = np.empty_like(x)
            loss = loss_at(x, grad, 0.5)
            penalty = 0.0
            if alpha and k > 1:
                penalty = alpha * float(np.dot(x[:d * h], x[:d * h])
                                        + np.dot(x[d * h:n_weights], x[d * h:n_weights]))
            return self.sklearn_loss(loss, penalty / weight_sum), grad

        verbose = est.verbose is True or est.verbose >= 1
        with thread_limits(module, n_threads, (X.shape[0], d, h)):
            result = minimize_packed(evaluate, start, max_iter=est.max_iter,
                                     max_fun=est.max_fun, tol=est.tol,
                                     iprint=1 if verbose else -1)
        est.n_iter_ = _check_optimize_result("lbfgs", result, est.max_iter)
        est.loss_ = result.fun
        # scikit-learn leaves views of SciPy's result, a float64 vector even
        # when SciPy evaluated the loss at float32 points (for float32 X)
        x = result.x
        est.coefs_ = [x[:d * h].reshape(d, h), x[d * h:d * h + h * k].reshape(h, k)]
        offset = d * h + h * k
        est.intercepts_ = [x[offset:offset + h], x[offset + h:offset + h + k]]

    # -- SGD and Adam ----------------------------------------------------------

    def stochastic(self, incremental):
        est, X = self.est, self.X
        if not incremental or not hasattr(est, "_optimizer"):
            params = est.coefs_ + est.intercepts_
            if est.solver == "sgd":
                est._optimizer = SGDOptimizer(params, est.learning_rate_init, est.learning_rate,
                                              est.momentum, est.nesterovs_momentum, est.power_t)
            else:
                est._optimizer = AdamOptimizer(params, est.learning_rate_init, est.beta_1,
                                               est.beta_2, est.epsilon)
        if est.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")

        n = X.shape[0]
        train_rows = val_rows = None
        if est.early_stopping:
            # splitting the row indices draws what splitting X, y would
            train_rows, val_rows = train_test_split(
                np.arange(n), random_state=est._random_state,
                test_size=est.validation_fraction)
            if len(val_rows) < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            validation = (X[val_rows], self.y[val_rows])
        n_train = n if train_rows is None else len(train_rows)
        if est.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if est.batch_size > n_train:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = int(np.clip(est.batch_size, 1, n_train))

        params = self._training_params()
        state = self._state_from_optimizer(params)
        # several outputs with a penalty: scikit-learn's loss averages each
        # batch's data term over the outputs but not its penalty, which the
        # epoch's total cannot separate: one call per batch (_epoch_by_batches)
        by_batches = self.k > 1 and est.alpha > 0
        batch_loss = np.empty(1)
        ordered = est.shuffle or train_rows is not None or by_batches
        sample_idx = np.arange(n_train, dtype=int)
        losses = np.empty(est.max_iter, dtype=np.float64)
        # one epoch per call where each epoch's parameters are needed
        one_at_a_time = est.early_stopping or by_batches
        diverged = False
        opened = None        # (spec, run) of the open run
        est.n_iter_ = 0
        done = 0
        try:
            with thread_limits(self.module, self.n_threads, (n_train, *params.W1.shape)), \
                    _interruptible():
                while done < est.max_iter:
                    count, spec, epoch0 = self._next_block(done, n_train, batch_size, ordered,
                                                           one_at_a_time or incremental)
                    if by_batches and isinstance(est._optimizer, SGDOptimizer):
                        # the epoch's rate, whatever the schedule, as a constant
                        spec = spec._replace(learning_rate=0.5 * float(est._optimizer.learning_rate),
                                             power_t=0.0, schedule_scale=1.0)
                    if not diverged:
                        if opened is None or opened[0] != spec:
                            opened = (spec, self.module.open_run(
                                X, self.Y, self.weights, params, state, spec,
                                batch_loss if by_batches else losses, self.n_threads))
                        orders = np.empty((count, n_train) if ordered else (0, 0),
                                          dtype=np.int64)
                        for row in orders:
                            if est.shuffle:
                                sample_idx = _shuffled(sample_idx, est._random_state)
                            row[:] = sample_idx if train_rows is None else train_rows[sample_idx]
                        if by_batches:
                            finished, losses[done] = self._epoch_by_batches(
                                opened[1], orders[0], batch_size, params, batch_loss)
                        else:
                            finished = opened[1](epoch0, done, count, orders)
                        if finished < count:
                            # scikit-learn goes on with non-finite weights: so do its books
                            diverged = True
                            for p in params:
                                p[...] = np.nan
                            losses[done + finished:done + count] = np.nan
                    else:
                        losses[done:done + count] = np.nan
                    for e in range(done, done + count):
                        loss = losses[e] if by_batches else self.sklearn_loss(losses[e])
                        stop = self._epoch_ends(float(loss), n_train, validation
                                                if est.early_stopping else None)
                        if stop or incremental:
                            assert e == done + count - 1, "a block must end where training may stop"
                        elif est.n_iter_ == est.max_iter:
                            warnings.warn(
                                "Stochastic Optimizer: Maximum iterations (%d) reached and "
                                "the optimization hasn't converged yet." % est.max_iter,
                                ConvergenceWarning)
                    done += count
                    if stop or incremental:
                        break
        finally:
            self._state_to_optimizer(state)
        if est.early_stopping:
            est.coefs_ = est._best_coefs
            est.intercepts_ = est._best_intercepts

    def _epoch_by_batches(self, run, rows, batch_size, params, batch_loss):
        """One epoch over ``rows``, one call per batch, each batch's penalty
        taken at the parameters it starts from: ``(finished, loss)`` with
        scikit-learn's epoch loss (the batches' losses weighted by their rows)."""
        total = 0.0
        for start in range(0, len(rows), batch_size):
            batch = rows[None, start:start + batch_size]
            penalty = self.est.alpha * float(np.dot(params.W1.ravel(), params.W1.ravel())
                                             + np.dot(params.W2.ravel(), params.W2.ravel()))
            if run(0, 0, 1, batch) < 1:
                return 0, np.nan
            m = batch.shape[1]
            total += self.sklearn_loss(batch_loss[0], penalty / m) * m
        return 1, total / len(rows)

    def _training_params(self):
        """The parameters the kernels update in place, published as coefs_ and
        intercepts_ (scikit-learn trains its own arrays in place too: a warm
        start keeps training the arrays early stopping restored)."""
        est, dtype = self.est, self.X.dtype
        W1, W2 = (np.ascontiguousarray(c, dtype=dtype) for c in est.coefs_)
        b1, b2 = (np.ascontiguousarray(b, dtype=dtype) for b in est.intercepts_)
        if W1.base is not None or W2.base is not None:  # views of one L-BFGS vector
            W1, W2, b1, b2 = W1.copy(), W2.copy(), b1.copy(), b2.copy()
        est.coefs_ = [W1, W2]
        est.intercepts_ = [b1, b2]
        return Params(W1, b1, W2, b2)

    def _state_from_optimizer(self, params):
        """The backend's optimizer state from scikit-learn's optimizer object:
        velocities are the same; Adam's moments are of gradients half the size."""
        opt = self.est._optimizer
        order = (0, 2, 1, 3)  # scikit-learn's [W1, W2, b1, b2] -> W1, b1, W2, b2
        dtype = params.W1.dtype
        if isinstance(opt, AdamOptimizer):
            m = Params(*(np.ascontiguousarray(2 * opt.ms[i], dtype=dtype) for i in order))
            v = Params(*(np.ascontiguousarray(4 * opt.vs[i], dtype=dtype) for i in order))
            t = opt.t
        else:
            m = Params(*(np.ascontiguousarray(opt.velocities[i], dtype=dtype) for i in order))
            v = Params(*(np.zeros_like(p) for p in params))
            t = 0
        return OptimizerState(m, v, np.array([t], dtype=np.int64))

    def _state_to_optimizer(self, state):
        opt = self.est._optimizer
        m = [state.m.W1, state.m.W2, state.m.b1, state.m.b2]
        if isinstance(opt, AdamOptimizer):
            opt.ms = [0.5 * a for a in m]
            opt.vs = [0.25 * a for a in (state.v.W1, state.v.W2, state.v.b1, state.v.b2)]
            opt.t = int(state.t[0])
            if opt.t:
                opt.learning_rate = (opt.learning_rate_init * np.sqrt(1 - opt.beta_2 ** opt.t)
                                     / (1 - opt.beta_1 ** opt.t))
        else:
            opt.velocities = [a.copy() for a in m]

    def _next_block(self, done, n_train, batch_size, ordered, single):
        """``(count, spec, epoch0)`` of the next call into the backend: epochs
        at one learning-rate rule, ending no later than the first epoch at
        which scikit-learn's rules could stop or change the learning rate."""
        est = self.est
        opt = est._optimizer
        count = est.max_iter - done
        if single:
            count = 1
        elif np.isfinite(est.n_iter_no_change):
            # the count of epochs without improvement grows by one an epoch at most
            # (absent after an L-BFGS fit: scikit-learn then fails on loss_curve_, as here)
            no_improvement = getattr(est, "_no_improvement_count", 0)
            count = min(count, max(1, int(est.n_iter_no_change) + 1 - no_improvement))
        rate, power_t, scale, epoch0 = opt.learning_rate, 0.0, 1.0, 0
        if isinstance(opt, SGDOptimizer) and opt.lr_schedule == "invscaling" and opt.power_t:
            t0 = est.t_
            on_schedule = np.float64(opt.learning_rate_init) / (t0 + 1) ** opt.power_t
            if opt.learning_rate == on_schedule:
                # epoch j of the block steps with init / (t0 + j n + 1) ** power_t
                rate, power_t = float(opt.learning_rate_init), float(opt.power_t)
                if t0 % n_train == 0:
                    epoch0, scale = t0 // n_train, float(n_train)
                else:
                    rate = rate / (t0 + 1) ** power_t
                    scale = n_train / (t0 + 1)
            else:
                count = 1   # a fresh optimizer's first epoch runs at the initial rate
        if isinstance(opt, AdamOptimizer):
            spec = self._spec(ADAM, float(est.learning_rate_init), 0.0, 1.0, batch_size, ordered)
        else:
            spec = self._spec(SGD, 0.5 * float(rate), power_t, scale, batch_size, ordered)
        return count, spec, epoch0

    def _spec(self, optimizer, learning_rate, power_t, scale, batch_size, ordered):
        est = self.est
        return TrainSpec(
            activation=self.activation, optimizer=optimizer, learning_rate=learning_rate,
            power_t=power_t, momentum=float(est.momentum),
            nesterov=bool(est.nesterovs_momentum and est.momentum),
            beta1=float(est.beta_1), beta2=float(est.beta_2),
            # gradients twice scikit-learn's: so are sqrt(v) and the epsilon beside it
            epsilon=2.0 * float(est.epsilon), alpha=float(est.alpha), batch_size=batch_size,
            shuffled=ordered, schedule_scale=scale, epsilon_before_correction=True)

    def _epoch_ends(self, loss, n_train, validation):
        """scikit-learn's books after an epoch; True when training stops."""
        est = self.est
        est.n_iter_ += 1
        est.loss_ = loss
        est.t_ += n_train
        est.loss_curve_.append(loss)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        if validation is not None:
            est._update_no_improvement_count(True, *validation, None)
        else:
            est._update_no_improvement_count(False, None, None, None)
        est._optimizer.iteration_ends(est.t_)
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if validation is not None else "Training loss"
            msg = (f"{what} did not improve more than tol={est.tol:f} for "
                   f"{est.n_iter_no_change} consecutive epochs.")
            if est._optimizer.trigger_stopping(msg, est.verbose):
                return True
            est._no_improvement_count = 0
        return False


def _shuffled(sample_idx, random_state):
    """``sklearn.utils.shuffle(sample_idx, random_state=random_state)``: the
    same single draw (``random_state.shuffle`` of ``arange(n)``) without its
    input checks, which cost more than the draw on small data sets. The
    swaps that shuffle makes of ``arange(n)``, made on a copy of
    ``sample_idx``, give ``sample_idx[permutation]`` itself: with an MT19937
    generator, ``_legacy_shuffle`` makes them, draw for draw."""
    bit_generator = getattr(random_state, "_bit_generator", None)
    fast = _legacy_shuffle()
    if (fast is not None and type(bit_generator) is np.random.MT19937
            and sample_idx.dtype == np.int64 and 0 < len(sample_idx) < 2**32):
        shuffled = np.array(sample_idx, copy=True, order="C")
        fast.shuffle(bit_generator, shuffled)
        return shuffled
    permutation = np.arange(len(sample_idx))
    random_state.shuffle(permutation)
    return sample_idx[permutation]


@functools.cache
def _legacy_shuffle():
    """The compiled ``_legacy_shuffle`` module, once it has read NumPy's
    MT19937 state in the layout NumPy reports (checked once a process), else None."""
    try:
        from . import _legacy_shuffle as module
        probe = np.random.MT19937(20261206)
        probe.random_raw(5)
        return module if module.layout_matches(probe) else None
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


class _interruptible:
    """Ctrl-C ends training with a warning and the model so far, as in scikit-learn."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
            return True
        return False


def _available_in_order():
    from .backends import available_backends
    return available_backends()


_PROBED = {}


def _runs_sklearn_forms(name):
    """Whether backend ``name`` honours TrainSpec.schedule_scale,
    epsilon_before_correction and row orders naming a subset of rows: a
    two-epoch probe against the NumPy reference (cached)."""
    if name == "numpy":
        return True
    if name not in _PROBED:
        try:
            _PROBED[name] = _probe(resolve_backend(name)[1])
        except Exception:  # a backend that cannot run the probe cannot run the fit
            _PROBED[name] = False
    return _PROBED[name]


def _probe(module):
    from .backends import numpy as reference
    rng = np.random.RandomState(0)
    X = rng.standard_normal((12, 3))
    Y = rng.standard_normal((12, 2))
    w = np.ones(12)
    orders = np.array([rng.permutation(12)[:9] for _ in range(3)], dtype=np.int64)
    results = []
    for optimizer in (SGD, ADAM):
        spec = TrainSpec(activation=ACTIVATIONS["tanh"].code, optimizer=optimizer,
                         learning_rate=0.05, power_t=0.5, momentum=0.9, nesterov=True,
                         beta1=0.9, beta2=0.999, epsilon=0.3, alpha=0.01, batch_size=4,
                         shuffled=True, schedule_scale=9.0, epsilon_before_correction=True)
        for mod in (reference, module):
            p = Params(*(np.ascontiguousarray(a) for a in (
                rng.uniform(-1, 1, (3, 5)), rng.uniform(-1, 1, 5),
                rng.uniform(-1, 1, (5, 2)), rng.uniform(-1, 1, 2))))
            if mod is module:
                p = Params(*(a.copy() for a in results[-1][1]))
            zeros = Params(*(np.zeros_like(a) for a in p))
            state = OptimizerState(zeros, Params(*(np.zeros_like(a) for a in p)),
                                   np.zeros(1, dtype=np.int64))
            start = Params(*(a.copy() for a in p))
            losses = np.zeros(3)
            with thread_limits(mod, 1):
                mod.open_run(X, Y, w, p, state, spec, losses, 1)(1, 0, 3, orders)
            results.append((p, start, losses))
    for i in (0, 2):
        (ref, _, ref_loss), (got, _, got_loss) = results[i], results[i + 1]
        if not np.allclose(ref_loss, got_loss, rtol=1e-9, atol=0):
            return False
        if not all(np.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(ref, got)):
            return False
    return True
