"""The training driver: optimizer settings, optimizer state and the chunked epoch loop.

The backends run blocks of epochs entirely in compiled code; this module calls
them block by block so that progress, callbacks and early stopping live in
Python at no per-epoch cost (a block is 1 epoch only with early stopping).
"""

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from ._params import Params
from ._validation import usable_cores
from .backends import thread_limits

SGD, ADAM = 0, 1
# "gd" is the seed's method: SGD on one batch of all the rows, in order
OPTIMIZERS = {"gd": SGD, "sgd": SGD, "adam": ADAM}
SCHEDULES = ("constant", "invscaling")
# With shuffling, blocks hold about this many order entries (at least one
# epoch). Drawing an order costs ~5 ns a row (shallownet._shuffle), about a
# twentieth of a minibatch Adam epoch at (100000, 10, 32). When the compiled
# loops leave a core free (n_threads below the usable cores), the next
# block's orders are drawn on a helper thread while they run the current
# block with the GIL released; when they use every core, the orders are drawn before each block:
# a helper thread there takes a core from a parallel region that waits for
# it at every batch (measured at that shape, Adam, 2 threads on 2 cores:
# 11.0-12.9 ms an epoch with the helper, 8.9-9.3 with the orders drawn
# beforehand, plus 0.5 ms to draw them).
_OVERLAP_ORDER_ENTRIES = 1 << 18
# with a progress bar, each block of epochs lasts about this long: the bar
# moves often enough, and the returns from compiled code (1-8 us each)
# stay a small part of a fit however short its epochs (benches/RESULTS.md)
_PROGRESS_SECONDS = 0.05


class TrainSpec(NamedTuple):
    """The scalars every backend's ``train`` reads (see ``shallownet.backends``)."""

    activation: int      # code from _activations.ACTIVATIONS
    optimizer: int       # SGD or ADAM
    learning_rate: float
    power_t: float       # epoch e steps with learning_rate / (e + 1) ** power_t
    momentum: float
    nesterov: bool
    beta1: float
    beta2: float
    epsilon: float
    alpha: float         # L2 penalty
    batch_size: int
    shuffled: bool       # each epoch walks the rows of its order (a permutation)
    # epoch e steps with learning_rate / (e * schedule_scale + 1) ** power_t;
    # scikit-learn's invscaling counts samples seen (schedule_scale = n)
    schedule_scale: float = 1.0
    # Adam's epsilon added to sqrt(v) before the bias correction, folded
    # into the step size (scikit-learn's form) instead of after it
    epsilon_before_correction: bool = False


class OptimizerState(NamedTuple):
    m: Params            # SGD: velocity; Adam: first moment
    v: Params            # Adam: second moment
    t: np.ndarray        # int64 (1,): optimizer steps taken so far


def new_state(params):
    zeros = lambda: Params(*(np.zeros_like(p) for p in params))  # noqa: E731
    return OptimizerState(zeros(), zeros(), np.zeros(1, dtype=np.int64))


def weighted_loss(params, X, Y, sample_weight, activation):
    """The data term of L at ``params`` (no penalty), by the NumPy forward pass."""
    W1, b1, W2, b2 = params
    residual = Y - (activation.g(X @ W1 + b1) @ W2 + b2)
    return float(np.sum(sample_weight[:, None] * residual * residual, dtype=np.float64)
                 / np.sum(sample_weight, dtype=np.float64))


class Trainer:
    """Everything a fit needs to go on: backend, settings, parameters, optimizer state."""

    def __init__(self, module, options, activation, params, state, shuffle_rng, n_threads):
        self.module = module
        self.options = options          # the validated keyword arguments of fit
        self.activation = activation
        self.params = params
        self.state = state
        self.shuffle_rng = shuffle_rng
        self.n_threads = n_threads
        self.epochs_done = 0
        self.best_epoch = None          # with early stopping: the epoch whose parameters were kept

    def _spec(self, n):
        o = self.options
        batch_size = n if o["optimizer"] == "gd" else min(o["batch_size"], n)
        return TrainSpec(
            activation=self.activation.code, optimizer=OPTIMIZERS[o["optimizer"]],
            learning_rate=o["learning_rate"],
            power_t=o["power_t"] if o["learning_rate_schedule"] == "invscaling" else 0.0,
            momentum=o["momentum"], nesterov=bool(o["nesterov"]), beta1=o["beta1"],
            beta2=o["beta2"], epsilon=o["epsilon"], alpha=o["alpha"], batch_size=batch_size,
            shuffled=o["optimizer"] != "gd" and bool(o["shuffle"]))

    def _diverged(self, what):
        rate = self.options["learning_rate"]
        raise FloatingPointError(
            f"training diverged: {what} with "
            f"learning_rate={rate:g}; try a smaller learning_rate (for example {rate / 10:g}) "
            f"or scale X and y")

    @staticmethod
    def _next_count(done, epochs, block, callback, callback_every):
        """The epochs of the next call into the backend, ``done`` of ``epochs`` run."""
        count = min(block, epochs - done)
        if callback is not None:  # stop at every callback_every-th epoch
            count = min(count, callback_every - done % callback_every)
        return count

    def run(self, X, Y, sample_weight, epochs, *, validation=None, callback=None,
            callback_every=1, progress=None):
        """Train up to ``epochs`` epochs; returns ``(loss_curve, validation_curve)``.

        Stops early when ``callback`` returns True or, with ``validation``
        (X_val, Y_val, w_val), when the validation loss has not improved by
        ``tol`` for ``n_iter_no_change`` epochs; then the best parameters are
        restored. Raises FloatingPointError when the loss stops being finite.
        """
        n = X.shape[0]
        o = self.options
        losses = np.full(epochs, np.nan)
        val_losses = np.full(epochs if validation is not None else 0, np.nan)
        spec = self._spec(n)
        shuffled = spec.shuffled
        cap = 1 if validation is not None else epochs
        if shuffled:
            cap = min(cap, max(1, _OVERLAP_ORDER_ENTRIES // n))
        # with a progress bar the blocks start at one epoch and grow to last
        # about _PROGRESS_SECONDS each: frequent updates, few returns
        block = 1 if progress is not None else cap
        orders = _Orders(self.shuffle_rng, n, shuffled,
                         overlap=self.n_threads < usable_cores())
        batch_orders = _Orders.IN_ORDER   # replaced every block when shuffled
        best = (math.inf, None, 0)  # (validation loss, params, epoch)
        no_improvement = 0
        done = 0
        try:
            with thread_limits(self.module, self.n_threads):
                # buffers and settings once per run: each block is then one
                # cheap call (a return costs 1-8 us, benches/RESULTS.md)
                run = self.module.open_run(X, Y, sample_weight, self.params, self.state, spec,
                                           losses, self.n_threads)
                while done < epochs:
                    count = self._next_count(done, epochs, block, callback, callback_every)
                    if shuffled:
                        ahead = (self._next_count(done + count, epochs, block, callback,
                                                  callback_every)
                                 if done + count < epochs else 0)
                        batch_orders = orders.get(count, ahead)
                    if progress is not None:
                        started = time.perf_counter()
                    # the backend writes the block's losses straight into the curve
                    finished = run(self.epochs_done, done, count, batch_orders)
                    if progress is not None:
                        seconds = (time.perf_counter() - started) / count
                        block = min(cap, max(1, math.ceil(_PROGRESS_SECONDS / max(seconds, 1e-9))))
                    if finished < count:
                        self._diverged(f"the loss became {losses[done + finished]:g} at epoch "
                                       f"{self.epochs_done + finished}")
                    self.epochs_done += count
                    done += count
                    if progress is not None:
                        progress(done, losses[done - 1])
                    stop = (callback is not None and done % callback_every == 0
                            and bool(callback(self.epochs_done - 1, float(losses[done - 1]),
                                              self.params)))
                    if validation is not None:
                        val = weighted_loss(self.params, *validation, self.activation)
                        val_losses[done - 1] = val
                        if val < best[0] - o["tol"]:
                            best = (val, Params(*(p.copy() for p in self.params)),
                                    self.epochs_done)
                            no_improvement = 0
                        else:
                            no_improvement += 1
                        stop = stop or no_improvement >= o["n_iter_no_change"]
                    if stop:
                        break
        finally:
            orders.close()
        # A step that makes a parameter non-finite makes the next batch's loss
        # non-finite, which the backend reports; only the last step of the
        # run is left to check (here, once: ~10 us a check at every return
        # from compiled code was half of a callback's cost).
        if done and not all(np.isfinite(p).all() for p in self.params):
            self._diverged(f"a parameter became non-finite in the last step of epoch "
                           f"{self.epochs_done - 1}")
        if validation is not None and best[1] is not None:
            for p, b in zip(self.params, best[1]):
                p[...] = b
            self.best_epoch = best[2] - 1
        return losses[:done], val_losses[:done]


def _permutation(rng, n):
    from ._shuffle import permutation  # imports Numba: only once a fit shuffles
    return permutation(rng, n)


class _Orders:
    """The row orders of a run's blocks: for shuffled batches, a fresh
    permutation per epoch from the shuffle RNG, one epoch after another; else
    the empty (0, 0) array that means rows in order.

    With ``overlap``, the orders of the next block are drawn on a helper
    thread while the current block trains. Results do not depend on it: the
    draws are the same, in the same order, and ``close`` rewinds the RNG to
    before the first epoch drawn ahead but never trained, so the RNG ends
    where the epochs that ran left it."""

    IN_ORDER = np.empty((0, 0), dtype=np.int64)

    def __init__(self, rng, n, shuffled, overlap=True):
        self.rng = rng
        self.n = n
        self.shuffled = shuffled
        self.overlap = overlap
        self.pool = None
        self.pending = None      # a future of [(RNG state before the draw, order), ...]
        self.ready = []          # epochs drawn ahead, not yet handed out

    def _draw_recorded(self, epochs):
        drawn = []
        for _ in range(epochs):
            state = self.rng.bit_generator.state
            drawn.append((state, _permutation(self.rng, self.n)))
        return drawn

    def _collect(self):
        if self.pending is not None:
            self.ready.extend(self.pending.result())
            self.pending = None

    def get(self, count, ahead):
        """The orders of the next ``count`` epochs; then start drawing those
        of the ``ahead`` epochs after them."""
        if not self.shuffled:
            return self.IN_ORDER
        self._collect()
        taken, self.ready = self.ready[:count], self.ready[count:]
        orders = np.empty((count, self.n), dtype=np.int64)
        for row, (_, order) in zip(orders, taken):
            row[:] = order
        for row in orders[len(taken):]:
            row[:] = _permutation(self.rng, self.n)
        if self.overlap and ahead > len(self.ready):
            if self.pool is None:
                self.pool = ThreadPoolExecutor(max_workers=1)
            self.pending = self.pool.submit(self._draw_recorded, ahead - len(self.ready))
        return orders

    def close(self):
        self._collect()
        if self.ready:
            self.rng.bit_generator.state = self.ready[0][0]
            self.ready = []
        if self.pool is not None:
            self.pool.shutdown()
