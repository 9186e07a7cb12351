"""The training driver: optimizer settings, optimizer state and the chunked epoch loop.

The backends run blocks of epochs entirely in compiled code; this module calls
them block by block so that progress, callbacks and early stopping live in
Python at no per-epoch cost (a block is 1 epoch only with early stopping).
"""

import math
import time
from concurrent.futures import ThreadPoolExecutor
import numpy as np

from ._options import ADAM, OPTIMIZERS, SCHEDULES, SGD, OptimizerState, TrainSpec, new_state  # noqa: F401
from ._params import Params
from ._threads import usable_cores
from .backends import open_packed_loss, thread_limits

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
# moves often enough, and the returns from compiled code stay a small part
# of a fit however short its epochs (docs/kernels.md, "A run of calls")
_PROGRESS_SECONDS = 0.05
# without one, blocks last about this long, so that Ctrl-C (seen by Python
# between blocks) stops a fit well within a second of any backend
_BLOCK_SECONDS = 0.2
# the backends write a block's losses here; the curve grows by copies of it
_CURVE_BUFFER = 1 << 16


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

    def _spec(self, n, subset, n_rows):
        o = self.options
        batch_size = n_rows if o["optimizer"] == "gd" else min(o["batch_size"], n)
        return TrainSpec(
            activation=self.activation.code, optimizer=OPTIMIZERS[o["optimizer"]],
            learning_rate=o["learning_rate"],
            power_t=o["power_t"] if o["learning_rate_schedule"] == "invscaling" else 0.0,
            momentum=o["momentum"], nesterov=bool(o["nesterov"]), beta1=o["beta1"],
            beta2=o["beta2"], epsilon=o["epsilon"], alpha=o["alpha"], batch_size=batch_size,
            # minibatches of a subset of the rows walk it through explicit orders
            shuffled=o["optimizer"] != "gd" and (bool(o["shuffle"]) or subset))

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

    def run(self, X, Y, sample_weight, epochs, *, rows=None, validation=None, callback=None,
            callback_every=1, progress=None):
        """Train up to ``epochs`` epochs; returns ``(loss_curve, validation_curve)``.

        ``rows`` (sorted int64 indices) trains on those rows of X only,
        without copying X: full batches give the other rows zero weight,
        minibatches walk orders drawn over ``rows``. Stops early when
        ``callback`` returns True or, with ``validation`` (X_val, Y_val,
        w_val), when the validation loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs; then the best parameters are restored.
        Raises FloatingPointError when the loss stops being finite.
        """
        o = self.options
        if o["optimizer"] == "lbfgs":
            return self._run_lbfgs(X, Y, sample_weight, epochs, callback=callback,
                                   callback_every=callback_every, progress=progress)
        subset = rows is not None
        # a full batch covers X's every row (those left out weigh nothing)
        spec = self._spec(len(rows) if subset else X.shape[0], subset, X.shape[0])
        shuffled = spec.shuffled
        n = len(rows) if subset and shuffled else X.shape[0]   # the rows an epoch walks
        if subset and not shuffled:
            # one full batch: the rows left out weigh nothing (the same
            # weighted mean as the subset's), so X needs no copy
            weights = np.zeros_like(sample_weight)
            weights[rows] = sample_weight[rows]
            sample_weight = weights
        # the curves grow with the epochs run, not the epochs asked for:
        # the backend writes each block's losses into a fixed buffer
        buffer = np.full(min(epochs, _CURVE_BUFFER), np.nan)
        curve, val_curve = [], []
        cap = 1 if validation is not None else len(buffer)
        if shuffled:
            cap = min(cap, max(1, _OVERLAP_ORDER_ENTRIES // n))
        # blocks start at one epoch and grow to last about _BLOCK_SECONDS
        # (_PROGRESS_SECONDS with a progress bar): Python sees Ctrl-C and
        # moves the bar between blocks, and the returns stay rare
        target = _BLOCK_SECONDS if progress is None else _PROGRESS_SECONDS
        block = 1
        orders = _Orders(self.shuffle_rng, n, shuffled, rows=rows,
                         overlap=self.n_threads < usable_cores(),
                         draw=bool(o["shuffle"]))
        batch_orders = _Orders.IN_ORDER   # replaced every block when shuffled
        best = (math.inf, None, 0)  # (validation loss, params, epoch)
        no_improvement = 0
        done = 0
        try:
            with thread_limits(self.module, self.n_threads, (X.shape[0], *self.params.W1.shape)):
                # buffers and settings once per run: each block is then one
                # cheap call (docs/kernels.md, "A run of calls")
                run = self.module.open_run(X, Y, sample_weight, self.params, self.state, spec,
                                           buffer, self.n_threads)
                while done < epochs:
                    count = self._next_count(done, epochs, block, callback, callback_every)
                    if shuffled:
                        ahead = (self._next_count(done + count, epochs, block, callback,
                                                  callback_every)
                                 if done + count < epochs else 0)
                        batch_orders = orders.get(count, ahead)
                    started = time.perf_counter()
                    finished = run(self.epochs_done, 0, count, batch_orders)
                    seconds = (time.perf_counter() - started) / count
                    block = min(cap, max(1, math.ceil(target / max(seconds, 1e-9))))
                    losses = buffer[:count].copy()
                    if finished < count:
                        self._diverged(f"the loss became {losses[finished]:g} at epoch "
                                       f"{self.epochs_done + finished}")
                    curve.append(losses)
                    self.epochs_done += count
                    done += count
                    last = float(losses[-1])
                    if progress is not None:
                        progress(done, last)
                    stop = (callback is not None and done % callback_every == 0
                            and bool(callback(self.epochs_done - 1, last, self.params)))
                    if validation is not None:
                        val = weighted_loss(self.params, *validation, self.activation)
                        val_curve.append(val)
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
        loss_curve = np.concatenate(curve) if curve else np.empty(0)
        return loss_curve, np.array(val_curve, dtype=np.float64)


    def _run_lbfgs(self, X, Y, sample_weight, epochs, *, callback=None, callback_every=1,
                   progress=None):
        """Up to ``epochs`` L-BFGS-B iterations on all the rows (one kernel
        evaluation of the loss and gradients per SciPy call; Ctrl-C is seen
        at every one). Returns ``(loss after each iteration, empty)``."""
        from ._lbfgs import run_lbfgs
        module, n_threads, o = self.module, self.n_threads, self.options

        def after_iteration(iteration, loss, params):
            if progress is not None:
                progress(iteration + 1, loss)
            return (callback is not None and (iteration + 1) % callback_every == 0
                    and bool(callback(self.epochs_done + iteration, loss, params)))

        with thread_limits(module, n_threads, (X.shape[0], *self.params.W1.shape)), \
                np.errstate(over="ignore", invalid="ignore"):   # the line search backs off
            # one evaluator for the run: the backend plans and allocates once
            loss_at = open_packed_loss(module, X, Y, sample_weight, self.params.W1.shape[1],
                                       self.activation.code, o["alpha"], n_threads)
            result = run_lbfgs(loss_at, self.params, max_iter=epochs, max_fun=o["max_fun"],
                               tol=o["tol"], callback=after_iteration)
        for p, new in zip(self.params, result.params):
            p[...] = new
        self.epochs_done += result.n_iter
        return result.loss_curve, np.empty(0)


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

    def __init__(self, rng, n, shuffled, overlap=True, rows=None, draw=True):
        self.rng = rng
        self.n = n
        self.shuffled = shuffled
        self.rows = rows        # the orders index these rows (a subset of X's)
        self.draw = draw        # False: every epoch walks the rows in order
        self.overlap = overlap and draw
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
        if not self.draw:
            return np.ascontiguousarray(np.broadcast_to(self.rows, (count, self.n)))
        self._collect()
        taken, self.ready = self.ready[:count], self.ready[count:]
        orders = np.empty((count, self.n), dtype=np.int64)
        for row, (_, order) in zip(orders, taken):
            row[:] = order
        for row in orders[len(taken):]:
            row[:] = _permutation(self.rng, self.n)
        if self.rows is not None:
            orders = self.rows[orders]
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
