"""How a fit is timed: the per-epoch slope, its fixed cost, round-robin turns.

A fit of e epochs takes ``F + e s``: a fixed cost F (validation,
initialisation, set-up, the first touch of its buffers) and s per epoch.
Dividing one call's time by its epochs counts F / e into the epoch, which
at a small shape (s ~ 30 us, F ~ 2 ms) is most of it. So every repeat makes
three calls, of 1, E and 2E epochs, and takes

    s = (t(2E) - t(E)) / E          (F cancels)
    F = t(1) - s                    (reported as its own column)

with medians over the repeats of each. E is chosen so that E epochs last
``min_time`` (the slope is then a difference of calls that long), and is
at least MIN_EPOCHS.
"""

import math
import statistics
import time
from dataclasses import dataclass, field

from .cases import WARMUP_EPOCHS, flops_per_epoch
from .implementations import FACTORIES

MAX_EPOCHS = 1_000_000     # upper bound of the automatic choice of E
# lower bound: with E = 1 the slope t(2) - t(1) is one epoch against the
# jitter of two whole fits, and read NumPy's (100000, 100, 128) row as 244%
# of the machine's GEMM rate (benches/RESULTS.md)
MIN_EPOCHS = 3
# Pause before every implementation's turn (--settle), and before probing.
# After a multi-threaded BLAS call OpenBLAS keeps its idle worker threads
# spinning for ~0.1 s (one core at 100% after numpy.matmul on 2 threads):
# the next implementation shared a core with that spinner. Measured at
# (20000, 784, 256), Numba's median epoch was 317.3 ms without and 277.4 ms
# with this pause (docs/kernels.md).
SETTLE_SECONDS = 0.25


@dataclass
class Result:
    name: str
    shape: tuple
    dtype: str
    status: str                  # "ok", "not available", "error" or "noisy" (no positive slope)
    reason: str = ""
    epochs: int = 0              # E; 0 for a single call per repeat (the reference GEMM)
    times: list = field(default_factory=list)        # seconds per epoch (or per call), one per repeat
    one_epoch_times: list = field(default_factory=list)   # seconds of a 1-epoch call, one per repeat
    check_loss: float | None = None     # loss after one step, from the warm-up call
    loss_rel_diff: float | None = None  # |check_loss - numpy's| / numpy's
    warmup_seconds: float | None = None

    @property
    def ok(self):
        return self.status == "ok" and bool(self.times)

    @property
    def seconds(self):
        """Median seconds per epoch (per call for a single-call result)."""
        return statistics.median(self.times)

    @property
    def spread(self):
        """(max - min) / median of the repeats."""
        return (max(self.times) - min(self.times)) / self.seconds if len(self.times) > 1 else None

    @property
    def fixed_seconds(self):
        """A fit's fixed cost: the median 1-epoch call less one epoch; None if not measured."""
        if not self.one_epoch_times:
            return None
        return statistics.median(self.one_epoch_times) - self.seconds

    def gflops(self):
        n, d, h = self.shape
        return flops_per_epoch(n, d, h) / self.seconds / 1e9


def timed(run, epochs):
    start = time.perf_counter()
    loss = run(epochs)
    return time.perf_counter() - start, loss


def slope(run, epochs):
    """Seconds per epoch from one pair of calls of ``epochs`` and ``2 epochs``."""
    short, _ = timed(run, epochs)
    long, _ = timed(run, 2 * epochs)
    return (long - short) / epochs


def choose_epochs(run, min_time, max_epochs=MAX_EPOCHS):
    """The E (``MIN_EPOCHS`` to ``max_epochs``) for which E epochs are expected to last ``min_time`` s.

    A fit's fixed cost F, and its jitter of milliseconds on a shared
    machine, must not pass for epochs: the median of three 1-epoch calls
    measures F plus one epoch, and the probe grows until a call lasts four
    times that (epochs at least 3/4 of it) and a quarter of ``min_time``;
    the epochs beyond the first, over the time beyond the 1-epoch call,
    give the estimate.
    """
    one = timed(run, 1)[0]
    if one >= min_time:
        return MIN_EPOCHS
    if one < min_time / 4:  # cheap: a median of three
        one = statistics.median([one, timed(run, 1)[0], timed(run, 1)[0]])
    target = min(min_time, max(min_time / 4, 4 * one))
    epochs, elapsed = 1, one
    while epochs < max_epochs:
        # elapsed / epochs overestimates an epoch (it holds F): the jump stays below the target
        epochs = min(max_epochs, max(2 * epochs, math.ceil(epochs * target / max(elapsed, 1e-9))))
        elapsed, _ = timed(run, epochs)
        if elapsed >= target:
            per_epoch = (elapsed - one) / (epochs - 1)
            if per_epoch > 0:
                return max(MIN_EPOCHS, min(max_epochs, math.ceil(min_time / per_epoch)))
    return max_epochs


def prepare(name, shape, X, y, threads, epochs, min_time, optimizer="gd", settle=SETTLE_SECONDS):
    """Warm up and choose E; return ``(Result, run)`` (run None after a failure).

    Never raises for a failing run: a backend under development may fail, and
    the failure is reported in the table.
    """
    result = Result(name, shape, X.dtype.name, status="ok")
    try:
        run = FACTORIES[name](X, y, shape[2], threads, optimizer)
        result.warmup_seconds, result.check_loss = timed(run, WARMUP_EPOCHS)
        if epochs is None:
            if settle:
                time.sleep(settle)  # probe as the timed calls run: on a settled machine
            epochs = choose_epochs(run, min_time)
        result.epochs = epochs
    except Exception as exc:
        fail(result, exc)
        return result, None
    return result, run


def time_round_robin(prepared, repeats, settle=SETTLE_SECONDS):
    """Time ``repeats`` turns of every prepared ``(Result, run)``, one turn
    of each in order per round: a slow spell of a shared machine then lands
    on all of them alike, not on whichever happened to be running, so the
    ratios of the medians stay fair. A turn starts ``settle`` seconds after
    the one before (SETTLE_SECONDS) and makes the calls of 1, E and 2E
    epochs (module docstring; of 1 and 2 when E = 1 is asked for); a
    result with ``epochs == 0`` makes one call."""
    for _ in range(repeats):
        for result, run in prepared:
            if run is None or result.status != "ok":
                continue
            if settle:
                time.sleep(settle)
            try:
                if result.epochs == 0:
                    result.times.append(timed(run, 1)[0])
                    continue
                one, _ = timed(run, 1)
                if result.epochs == 1:  # the 1-epoch fit is also the pair's short one
                    result.times.append(timed(run, 2)[0] - one)
                else:
                    result.times.append(slope(run, result.epochs))
                result.one_epoch_times.append(one)
            except Exception as exc:
                fail(result, exc)
    for result, _ in prepared:
        # the fits' jitter outweighed their epochs: no per-epoch time to report
        if result.ok and result.epochs and result.seconds <= 0:
            result.status = "noisy"
            result.reason = (f"median per-epoch slope {result.seconds:.3g} s <= 0 over {len(result.times)} "
                             "repeats: the machine was too busy for E epochs; raise --min-time or --repeats")


def fail(result, exc):
    result.status = "error"
    result.reason = f"{type(exc).__name__}: {exc}"
    result.times = []
    result.one_epoch_times = []


def gemm_rate(seconds, size):
    return 2 * size**3 / seconds / 1e9


def gemm_gflops(run, size, repeats):
    """Median GFLOP/s of a warmed-up ``gemm_run`` of (size, size) matrices."""
    times = [timed(run, 1)[0] for _ in range(max(1, repeats))]
    return gemm_rate(statistics.median(times), size)
