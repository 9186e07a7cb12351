"""Training speed of every backend against each other, scikit-learn and PyTorch.

    python -m shallownet.bench --shapes quick
    python -m shallownet.bench --shapes full --dtype both --markdown benches/RESULTS.md --plot benches/speedup.png
    python -m shallownet.bench --shapes 100000x10x32 20000x784x256 --threads 1

For every shape (n, d, h), with k = 1 output and tanh, each implementation
trains on the same data (X standard normal, y = sin(X w) + noise, learning
rate 0.01) and the time of one epoch is measured as follows:

* one warm-up call of 2 epochs first (so Numba's compilation, page faults and
  thread start-up are not timed). Its loss after the first step is compared
  with the NumPy backend's, to catch a backend that is fast because it is wrong;
* then ``--repeats`` timed calls of E epochs each. E is chosen per
  implementation so that one call lasts at least ``--min-time`` seconds (or
  fixed with ``--epochs``). The reported time is the median over the repeats
  of (call time) / E, so fit()'s fixed cost (validation, initialisation) is
  included but spread over E epochs. Each timed call starts ``--settle``
  seconds (0.25) after the one before it, so that it does not share the
  cores with the previous implementation's idle-spinning BLAS threads.

Implementations: the shallownet backends that load (``available_backends()``;
the others are listed as "not available", never timed), scikit-learn's
``MLPRegressor`` (plain full-batch SGD, no momentum, no regularisation, no
early stopping; its loss is half the MSE and its initial weights differ, so it is
a speed comparison only) and a PyTorch eager loop (``nn.Linear`` layers,
autograd, ``torch.optim.SGD``, ``nn.MSELoss``, started from the same weights as
shallownet). All run with ``--threads`` threads: ``n_threads`` for fit(), BLAS
limited with threadpoolctl, ``torch.set_num_threads``.

GFLOP/s count only the matrix products of one epoch, ``2 n h (2 d + 3 k)``:
forward ``X W1`` (2ndh) and ``a1 W2`` (2nhk), backward ``a1^T dL/dyhat`` (2nhk),
``dL/dyhat W2^T`` (2nhk) and ``X^T dL/dz1`` (2ndh); element-wise work (g, g',
biases, the loss) is not counted. They are compared with the rate of one
large BLAS GEMM (``numpy.matmul`` of square float64 or float32 matrices)
measured in the same run with the same threads.

Where those products are nearly all of an epoch's work (full batch,
d x h >= 4096) and the Numba backend runs, the two d x h products alone, as
the Numba kernels chunk and tile them, take a turn in the same rounds too:
the floor of those epochs, printed with each compiled backend's speed as a
fraction of it.
"""

import argparse
import datetime
import importlib
import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import shallownet
from ._params import init_params
from ._validation import usable_cores
from .backends import BACKENDS, resolve_backend

K = 1                      # outputs
ACTIVATION = "tanh"
LEARNING_RATE = 0.01
ADAM_BATCH = 200             # --optimizer adam: scikit-learn's default minibatch
ADAM_LEARNING_RATE = 0.001   # and its default Adam step
WARMUP_EPOCHS = 2          # epoch 1's loss is taken after one step: it checks the gradients
SEED = 0
MAX_EPOCHS = 100_000       # upper bound of the automatic choice of E
# Pause before every timed call (--settle). After a multi-threaded BLAS call,
# OpenBLAS keeps its idle worker threads spinning: measured here, one thread
# at 100% of a core for 100-150 ms after numpy.matmul on 2 threads. Timed
# right after the NumPy backend or the reference GEMM, an implementation
# shared a core with that spinner for the first ~0.1 s of its call. At
# (20000, 784, 256): the products-alone floor timed straight after the
# GEMM ran at 75% of its rate, 88.6% with a pause; Numba's median epoch,
# timed after the NumPy backend, was 317.3 ms without and 277.4 ms with
# this pause (benches/RESULTS.md, runs Y-AB).
SETTLE_SECONDS = 0.25


class Preset(NamedTuple):
    shapes: tuple           # (n, d, h) triples
    min_time: float         # seconds one timed call should last at least
    gemm_size: int          # the square GEMM that gives the reference rate


PRESETS = {
    "full": Preset(
        shapes=((1000, 1, 1), (1000, 1, 16), (100000, 1, 16), (100000, 10, 32),
                (100000, 100, 128), (1000000, 10, 64), (20000, 784, 256)),
        min_time=1.0, gemm_size=4096),
    # the small end of "full" and a scaled-down medium shape: a smoke run in seconds
    "quick": Preset(shapes=((1000, 1, 1), (1000, 1, 16), (10000, 10, 32)),
                    min_time=0.05, gemm_size=1024),
}
# anything but the quick preset: a timed call lasts >= 1 s, so fit()'s fixed
# cost (validating X: ~13 ms at (20000, 784)) adds at most a few percent to
# the per-epoch time
EXPLICIT_SHAPES_MIN_TIME = PRESETS["full"].min_time
EXPLICIT_SHAPES_GEMM_SIZE = 4096

DTYPES = {"float64": (np.float64,), "float32": (np.float32,), "both": (np.float64, np.float32)}

COMPETITORS = ("sklearn", "torch")
# the order of the table's rows: the reference first
ALL_IMPLEMENTATIONS = ("numpy", "numba", "cython") + COMPETITORS


def flops_per_epoch(n, d, h, k=K):
    """Floating-point operations of the matrix products of one epoch: ``2 n h (2 d + 3 k)``."""
    return 2 * n * h * (2 * d + 3 * k)


def make_data(n, d, dtype=np.float64, seed=SEED):
    """X standard normal (n, d); y = sin(X w) + 0.1 noise with |w| = 1, so y is O(1) for any d."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    y = np.sin(X @ w) + 0.1 * rng.standard_normal(n)
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(y, dtype=dtype)


def shape_label(shape):
    n, d, h = shape
    return f"{n}x{d}x{h}"


# ---------------------------------------------------------------------------
# The implementations. Each factory takes (X, y, hidden, threads) and returns
# run(epochs) -> loss at the start of the last epoch (the MSE at the weights
# after epochs - 1 steps, as shallownet's loss_curve[-1]) or None when the loss
# is not comparable.

def _shallownet_factory(backend):
    def make(X, y, hidden, threads, optimizer="gd"):
        extra = {} if optimizer == "gd" else dict(optimizer=optimizer, batch_size=ADAM_BATCH,
                                                  learning_rate=ADAM_LEARNING_RATE)
        def run(epochs):
            model = shallownet.fit(X, y, **dict(dict(
                hidden=hidden, activation=ACTIVATION, learning_rate=LEARNING_RATE, epochs=epochs,
                backend=backend, random_state=SEED, dtype=X.dtype, n_threads=threads), **extra))
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
    W1, b1, W2, b2 = init_params(d, hidden, K, ACTIVATION, SEED, X.dtype)

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


FACTORIES = {name: _shallownet_factory(name) for name in BACKENDS}
FACTORIES["sklearn"] = _sklearn_factory
FACTORIES["torch"] = _torch_factory


def unavailable_reason(name):
    """None if implementation ``name`` can run here, else why not."""
    if name in BACKENDS:
        if name in shallownet.available_backends():
            return None
        try:
            resolve_backend(name)
        except (RuntimeError, ImportError) as exc:
            return str(exc)
        return f"backend {name!r} is not in shallownet.available_backends()"
    module = {"sklearn": "sklearn.neural_network", "torch": "torch"}[name]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"{module} cannot be imported: {exc}"
    return None


# ---------------------------------------------------------------------------
# Measurement

@dataclass
class Result:
    name: str
    shape: tuple
    dtype: str
    status: str                  # "ok", "not available" or "error"
    reason: str = ""
    epochs: int = 0
    times: list = field(default_factory=list)   # seconds per epoch, one per repeat
    check_loss: float | None = None     # loss after one step, from the warm-up call
    loss_rel_diff: float | None = None  # |check_loss - numpy's| / numpy's
    warmup_seconds: float | None = None

    @property
    def ok(self):
        return self.status == "ok"

    @property
    def seconds(self):
        return statistics.median(self.times)

    @property
    def spread(self):
        """(max - min) / median of the repeats."""
        return (max(self.times) - min(self.times)) / self.seconds if len(self.times) > 1 else None

    def gflops(self):
        n, d, h = self.shape
        return flops_per_epoch(n, d, h) / self.seconds / 1e9


def _timed(run, epochs):
    start = time.perf_counter()
    loss = run(epochs)
    return time.perf_counter() - start, loss


def choose_epochs(run, min_time, max_epochs=MAX_EPOCHS):
    """The smallest E (up to ``max_epochs``) for which run(E) is expected to last ``min_time`` s."""
    epochs = 1
    elapsed, _ = _timed(run, epochs)
    # grow the probe until it is long enough for a per-epoch estimate to be trusted
    probe_time = min_time / 4
    while elapsed < probe_time and epochs < max_epochs:
        epochs = min(max_epochs, max(2 * epochs, math.ceil(probe_time * epochs / max(elapsed, 1e-7))))
        elapsed, _ = _timed(run, epochs)
    return max(1, min(max_epochs, math.ceil(min_time * epochs / elapsed)))


def prepare(name, shape, X, y, threads, epochs, min_time, optimizer="gd"):
    """Warm up and choose E; return ``(Result, run)`` (run None after a failure).

    Never raises for a failing run: a backend under development may fail, and
    the failure is reported in the table.
    """
    result = Result(name, shape, X.dtype.name, status="ok")
    try:
        run = FACTORIES[name](X, y, shape[2], threads, optimizer)
        result.warmup_seconds, result.check_loss = _timed(run, WARMUP_EPOCHS)
        result.epochs = epochs if epochs is not None else choose_epochs(run, min_time)
    except Exception as exc:
        _fail(result, exc)
        return result, None
    return result, run


def time_round_robin(prepared, repeats, settle=SETTLE_SECONDS):
    """Time ``repeats`` calls of every prepared implementation, one call of
    each in turn: a slow spell of a shared machine then lands on all of them
    alike, not on whichever happened to be running, so the ratios of the
    medians stay fair. Each call starts ``settle`` seconds after the one
    before, so that it does not share the cores with the previous one's
    idle-spinning threads (SETTLE_SECONDS)."""
    for _ in range(repeats):
        for result, run in prepared:
            if run is None or not result.ok:
                continue
            if settle:
                time.sleep(settle)
            try:
                elapsed, _ = _timed(run, result.epochs)
            except Exception as exc:
                _fail(result, exc)
                continue
            result.times.append(elapsed / result.epochs)


def _fail(result, exc):
    result.status = "error"
    result.reason = f"{type(exc).__name__}: {exc}"
    result.times = []


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
    epochs whose two d x h products are nearly all the work (the Numba
    kernels' tall GEMM tiles, d x h >= GEMM_TALL_DH)."""
    from . import _numba_kernels
    n, d, h = shape
    return optimizer == "gd" and d * h >= _numba_kernels.GEMM_TALL_DH


def products_run(X, hidden, threads):
    """A ``run(epochs)`` of the epoch's two d x h products alone, as the
    Numba kernels' GEMM path chunks and tiles them
    (``_numba_kernels.products_only``; BLAS on one thread per worker),
    compiled and warmed up here: the floor of those shapes' epochs."""
    from . import _numba_kernels as kernels
    from .backends import numba as numba_backend

    n, d = X.shape
    W1 = (np.random.default_rng(SEED).standard_normal((d, hidden)) / math.sqrt(d)).astype(X.dtype)
    n_chunks, _, _, _, tile_rows = kernels._plan(n, d, hidden, K)
    max_workers = min(threads, n_chunks)
    buf_G = np.empty((max_workers, tile_rows * hidden), X.dtype)
    chunk_W1 = np.empty((n_chunks, d, hidden), X.dtype)

    def run(epochs):
        with threadpool_limits(limits=1, user_api="blas"), \
                numba_backend.threads(max_workers) as workers:
            for _ in range(epochs):
                kernels.products_only(X, W1, workers, buf_G, chunk_W1)
    run(1)
    return run


def gemm_rate(seconds, size):
    return 2 * size**3 / seconds / 1e9


def gemm_gflops(dtype, size, repeats):
    """Median GFLOP/s of ``numpy.matmul`` on (size, size) matrices, after one warm-up product."""
    run = gemm_run(dtype, size)
    times = [_timed(run, 1)[0] for _ in range(max(1, repeats))]
    return gemm_rate(statistics.median(times), size)


# ---------------------------------------------------------------------------
# Reporting

def _fmt(x, significant=3):
    """``x`` with ``significant`` digits and no exponent (1234 -> "1234", 0.01234 -> "0.0123")."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    decimals = max(0, significant - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def _ratio(results, row, other):
    ref = results.get(other)
    if ref is None or not ref.ok or not row.ok:
        return "–"
    return _fmt(ref.seconds / row.seconds)


TABLE_HEADER = ("shape n×d×h", "dtype", "impl", "epochs", "ms/epoch", "spread",
                "vs numpy", "vs torch", "vs sklearn", "GFLOP/s", "% of GEMM", "loss Δ vs numpy")


def table_rows(all_results, gemm):
    """One row per (shape, dtype, implementation); ratios are speed-ups (other's
    time / this time). ``gemm`` maps (shape, dtype) to the reference GEMM rate
    timed in that shape's round-robin, or dtype to the run's rate."""
    rows = []
    for (shape, dtype), results in all_results.items():
        for name, r in results.items():
            label = shape_label(shape).replace("x", "×")
            if not r.ok:
                rows.append((label, dtype, name, "–", r.status) + ("–",) * 7)
                continue
            spread = "–" if r.spread is None else f"{100 * r.spread:.0f}%"
            rate = r.gflops()
            reference = gemm.get((shape, dtype)) or gemm.get(dtype)
            fraction = f"{100 * rate / reference:.1f}%" if reference else "–"
            diff = "–" if r.loss_rel_diff is None else f"{r.loss_rel_diff:.1e}"
            rows.append((label, dtype, name, str(r.epochs), _fmt(1e3 * r.seconds, 4), spread,
                         _ratio(results, r, "numpy"), _ratio(results, r, "torch"),
                         _ratio(results, r, "sklearn"), _fmt(rate), fraction, diff))
    return rows


def render_table(rows, header=TABLE_HEADER):
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def kernel_isa():
    """The vector ISA the Cython kernels chose at import (AVX-512, AVX2 + FMA
    or baseline): the same package runs at different speeds on hosts with and
    without AVX-512, so results name it."""
    try:
        from shallownet import _cython_train
    except ImportError:
        return "Cython backend not available"
    return _cython_train.ISA


def versions():
    out = {"python": platform.python_version()}
    for label, dist in (("numpy", "numpy"), ("numba", "numba"), ("scipy", "scipy"),
                        ("scikit-learn", "scikit-learn"), ("torch", "torch"),
                        ("threadpoolctl", "threadpoolctl"), ("matplotlib", "matplotlib")):
        try:
            out[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[label] = "not installed"
    out["shallownet"] = shallownet.__version__
    return out


def library_lines(info):
    """One line per BLAS / OpenMP library that threadpoolctl found loaded."""
    lines = []
    for lib in info:
        filepath = lib.get("filepath") or "?"
        # the part after site-packages names the package that ships the library
        where = filepath.split("site-packages" + os.sep, 1)[-1]
        details = [f"{k}={lib[k]}" for k in ("architecture", "threading_layer", "num_threads")
                   if lib.get(k) is not None]
        name = " ".join(str(x) for x in (lib.get("internal_api"), lib.get("version")) if x)
        lines.append(f"{lib.get('user_api')}: {name} ({', '.join(details)}) from {where}")
    return lines


def dtype_ratio_lines(all_results):
    """For every shape timed in both dtypes: each implementation's float64
    ms/epoch over its float32 one (the same rounds, see main)."""
    lines = []
    for (shape, dtype), results in all_results.items():
        wide = all_results.get((shape, "float64"))
        if dtype != "float32" or wide is None:
            continue
        cells = [f"{name} {_fmt(wide[name].seconds / r.seconds)}" for name, r in results.items()
                 if r.ok and r.times and name in wide and wide[name].ok and wide[name].times]
        if cells:
            lines.append(f"- float64 over float32 time at {shape_label(shape)}: " + ", ".join(cells))
    return lines


def products_lines(products, all_results, gemm):
    """For every shape whose products alone were timed (``products_run``):
    their ms/epoch and rate (the epoch's GFLOP count), and each compiled
    backend's speed as a fraction of theirs (the same rounds)."""
    lines = []
    for (shape, dtype), floor in products.items():
        if not floor.ok or not floor.times:
            continue
        reference = gemm.get((shape, dtype))
        share = f", {100 * floor.gflops() / reference:.1f}% of GEMM" if reference else ""
        results = all_results.get((shape, dtype), {})
        cells = [f"{name} {100 * floor.seconds / r.seconds:.1f}%" for name, r in results.items()
                 if name in BACKENDS and name != "numpy" and r.ok and r.times]
        lines.append(f"- the two d×h products alone at {shape_label(shape)} {dtype} (tiled as in the "
                     f"Numba kernels, no elementwise work): {_fmt(1e3 * floor.seconds, 4)} ms/epoch"
                     f"{share}; the backends at " + (", ".join(cells) or "–") + " of that speed")
    return lines


def render_markdown(args_line, table, gemm, gemm_size, threads, blas_info, problems, optimizer="gd",
                    dtype_ratios=(), products=(), settle=SETTLE_SECONDS):
    cores = usable_cores()
    lines = [
        "# shallownet training speed",
        "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"Command: `{args_line}`",
        "",
        "## Machine",
        "",
        f"- CPU: {cpu_model()}; vector ISA of the Cython kernels: {kernel_isa()}",
        f"- cores usable by this process: {cores} (os.cpu_count() = {os.cpu_count()})",
        f"- threads used: {threads} (fit n_threads, BLAS via threadpoolctl, torch.set_num_threads)",
        f"- platform: {platform.platform()}",
    ]
    lines += [f"- {line}" for line in library_lines(blas_info)]
    lines += ["", "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in versions().items()]
    lines += [
        "",
        "## Method",
        "",
        (f"k = {K}, activation {ACTIVATION}, learning rate {LEARNING_RATE}, full-batch gradient descent; "
         if optimizer == "gd" else
         f"k = {K}, activation {ACTIVATION}, Adam (learning rate {ADAM_LEARNING_RATE}) on shuffled "
         f"minibatches of {ADAM_BATCH} (scikit-learn: its default MLPRegressor; PyTorch: torch.optim.Adam "
         "over torch.randperm batches); ") +
        "X standard normal, y = sin(X w) + 0.1 noise. Each implementation: one warm-up call of "
        f"{WARMUP_EPOCHS} epochs (not timed; compilation excluded) and a choice of `epochs`; then "
        "`repeats` rounds in which every implementation makes one timed call of `epochs` epochs in "
        "turn (so a slow spell of the machine hits all alike)"
        + (f", each call {settle:g} s after the one before (so that it does not share the cores "
           "with the previous one's idle-spinning BLAS threads)" if settle else
           ", each call straight after the one before (--settle 0)")
        + "; ms/epoch is the median over the rounds of call time / epochs, spread is "
        "(max - min) / median.",
        "",
        "- vs X: speed-up over X measured in this run (X's ms/epoch / this row's); > 1 is faster.",
        "- GFLOP/s count the matrix products only: 2 n h (2 d + 3 k) per epoch "
        "(X W1, a1 W2, a1ᵀ dL/dyhat, dL/dyhat W2ᵀ, Xᵀ dL/dz1); element-wise work is not counted.",
        "- % of GEMM: that rate over numpy.matmul's on two "
        f"{gemm_size}×{gemm_size} matrices of the same dtype, same threads, timed once in every "
        "round of the shape's round-robin (median): "
        + ", ".join(f"{shape_label(key[0])} {key[1]} {v:.1f}" for key, v in gemm.items()
                    if isinstance(key, tuple))
        + " GFLOP/s; before the shapes, this run: "
        + ", ".join(f"{dt} {v:.1f} GFLOP/s" for dt, v in gemm.items() if isinstance(dt, str))
        + ".",
        "- loss Δ vs numpy: relative difference of the loss after one step (from the same initial "
        "weights) to the NumPy backend's; sklearn starts elsewhere and reports half the MSE, so none.",
        ("- sklearn: MLPRegressor(solver='sgd', batch_size=n, momentum=0, alpha=0, shuffle=False, "
         "tol=0, no early stopping): a speed comparison only."
         if optimizer == "gd" else
         f"- sklearn: MLPRegressor(hidden_layer_sizes=(h,), activation='tanh', solver='adam', "
         f"batch_size={ADAM_BATCH}, learning_rate_init={ADAM_LEARNING_RATE}, tol=0, no early "
         "stopping; every other setting its default, alpha=1e-4 included): a speed comparison only."),
        ("- torch: eager nn.Linear / nn.Tanh / nn.MSELoss, autograd, torch.optim.SGD, full batch."
         if optimizer == "gd" else
         f"- torch: eager nn.Linear / nn.Tanh / nn.MSELoss, autograd, torch.optim.Adam, "
         f"batches of {ADAM_BATCH} rows indexed from torch.randperm per epoch."),
        "",
        "## Results",
        "",
        table,
    ]
    if dtype_ratios:
        lines += ["", "Both dtypes of a shape were timed in the same rounds:", ""] + list(dtype_ratios)
    if products:
        lines += ["", "The floor of the GEMM-bound shapes, timed in the same rounds:", ""] + list(products)
    if problems:
        lines += ["", "## Not timed", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def write_plot(path, all_results, dtypes, threads):
    """Speed-up over the NumPy backend against n*d*h, one line per implementation, one panel per dtype.

    Returns None when written, else the reason it was not.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend state is touched
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    except ImportError:
        return "matplotlib is not installed"
    fig = Figure(figsize=(6.5 * len(dtypes), 4.8), layout="constrained")
    axes = fig.subplots(1, len(dtypes), squeeze=False)[0]
    plotted = False
    for ax, dtype in zip(axes, dtypes):
        cases = sorted(((shape, results) for (shape, dt), results in all_results.items() if dt == dtype),
                       key=lambda item: math.prod(item[0]))
        # one evenly spaced position per shape, in order of n*d*h (a log axis
        # of n*d*h crowds shapes of similar size onto one point)
        position = {shape: i for i, (shape, _) in enumerate(cases)}
        for name in ALL_IMPLEMENTATIONS:
            if name == "numpy":
                continue
            points = [(position[shape], results["numpy"].seconds / results[name].seconds)
                      for shape, results in cases
                      if name in results and results[name].ok and "numpy" in results and results["numpy"].ok]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", label=name)
                plotted = True
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="numpy backend")
        ax.set_yscale("log")
        if cases:
            ax.set_xticks(range(len(cases)),
                          [shape_label(shape).replace("x", "×") for shape, _ in cases],
                          rotation=30, ha="right", fontsize="small")
        ax.yaxis.set_major_locator(FixedLocator([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}×"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("shape n×d×h, in order of n·d·h")
        ax.set_ylabel("speed-up over the NumPy backend (×)")
        ax.set_title(f"{dtype}, {threads} thread{'s' if threads > 1 else ''}, tanh, k={K}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    if not plotted:
        return "nothing to plot: the NumPy backend (the reference) or every other implementation is missing"
    fig.suptitle(f"shallownet fit() speed-up per epoch — {cpu_model()}")
    fig.savefig(path, dpi=120)
    return None


# ---------------------------------------------------------------------------
# Command line

def _parse_shapes(tokens):
    """Preset names and/or n x d x h triples (space- or comma-separated)."""
    shapes, presets = [], []
    for token in tokens:
        for item in filter(None, token.split(",")):
            if item in PRESETS:
                presets.append(item)
                shapes.extend(PRESETS[item].shapes)
                continue
            parts = item.lower().split("x")
            try:
                triple = tuple(int(p) for p in parts)
            except ValueError:
                triple = ()
            if len(triple) != 3 or min(triple) < 1:
                raise argparse.ArgumentTypeError(
                    f"shape {item!r} is neither a preset ({', '.join(PRESETS)}) nor n x d x h "
                    "with three positive integers, like 1000x1x16")
            shapes.append(triple)
    return list(dict.fromkeys(shapes)), presets


def _parse_names(tokens):
    names = [item for token in tokens for item in token.split(",") if item]
    unknown = sorted(set(names) - set(ALL_IMPLEMENTATIONS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown implementation(s) {unknown}; choose from {', '.join(ALL_IMPLEMENTATIONS)}")
    return [n for n in ALL_IMPLEMENTATIONS if n in names]  # table order, no duplicates


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_int_or(word):
    """A parser of a positive integer, or of ``word`` meaning None (the default)."""
    def parse(text):
        if text == word:
            return None
        try:
            return _positive_int(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected a positive integer or {word!r}, got {text!r}") from None
    return parse


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m shallownet.bench",
        description="Time one epoch of shallownet.fit() per backend, against scikit-learn and PyTorch.")
    parser.add_argument("--shapes", nargs="+", default=["quick"], metavar="SHAPE",
                        help="preset 'quick' (seconds) or 'full', and/or shapes n x d x h like "
                             "1000x1x16 (default: quick)")
    parser.add_argument("--epochs", type=_positive_int_or("auto"), default=None, metavar="E|auto",
                        help="epochs per timed call (default auto: each call lasts --min-time)")
    parser.add_argument("--min-time", type=_non_negative_float, default=None, metavar="SECONDS",
                        help="with --epochs auto, the least duration of a timed call "
                             f"(default: {PRESETS['quick'].min_time} for quick only, else "
                             f"{EXPLICIT_SHAPES_MIN_TIME})")
    parser.add_argument("--repeats", type=_positive_int, default=5,
                        help="timed calls per implementation and shape; the median is reported (default 5)")
    parser.add_argument("--threads", type=_positive_int_or("all"), default=None, metavar="N|all",
                        help=f"threads for every implementation (default all: {usable_cores()} here)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float64")
    parser.add_argument("--optimizer", choices=("gd", "adam"), default="gd",
                        help="gd: the seed's full-batch gradient descent everywhere; adam: Adam on "
                             f"shuffled minibatches of {ADAM_BATCH} (scikit-learn's default MLPRegressor)")
    parser.add_argument("--backends", nargs="+", default=list(ALL_IMPLEMENTATIONS), metavar="NAME",
                        help=f"implementations to run, from {', '.join(ALL_IMPLEMENTATIONS)} (default all)")
    parser.add_argument("--settle", type=_non_negative_float, default=SETTLE_SECONDS, metavar="SECONDS",
                        help="pause before every timed call, so that the previous implementation's "
                             "idle threads (OpenBLAS spins ~0.1 s after a call) are asleep "
                             f"(default {SETTLE_SECONDS}; 0: none)")
    parser.add_argument("--gemm-size", type=_positive_int, default=None, metavar="N",
                        help="size of the reference GEMM (default 4096, or 1024 for quick only)")
    parser.add_argument("--markdown", metavar="PATH", help="write the results with machine info as Markdown")
    parser.add_argument("--plot", metavar="PATH.png", help="write a PNG of speed-up over the NumPy backend")
    return parser


def _log(message):
    print(message, file=sys.stderr, flush=True)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        shapes, presets = _parse_shapes(args.shapes)
        names = _parse_names(args.backends)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    # the quick preset alone gets its short timings; anything else is measured properly
    quick_only = set(presets) == {"quick"} and set(shapes) <= set(PRESETS["quick"].shapes)
    min_time = args.min_time if args.min_time is not None else (
        PRESETS["quick"].min_time if quick_only else EXPLICIT_SHAPES_MIN_TIME)
    gemm_size = args.gemm_size or (PRESETS["quick"].gemm_size if quick_only else EXPLICIT_SHAPES_GEMM_SIZE)
    threads = args.threads or usable_cores()
    dtypes = [np.dtype(t).name for t in DTYPES[args.dtype]]

    missing = {name: unavailable_reason(name) for name in names}
    missing = {name: why for name, why in missing.items() if why is not None}
    for name, why in missing.items():
        _log(f"{name}: not available ({why})")

    blas_info = threadpool_info()  # before our limits, as the install configures it
    all_results = {}
    products = {}   # (shape, dtype) -> the products-alone floor's Result
    with threadpool_limits(limits=threads, user_api="blas"):
        gemm = {}
        for dtype in dtypes:
            gemm[dtype] = gemm_gflops(dtype, gemm_size, min(args.repeats, 3))
            _log(f"{'D' if dtype == 'float64' else 'S'}GEMM {gemm_size}^3 on {threads} threads: "
                 f"{gemm[dtype]:.1f} GFLOP/s")
        for shape in shapes:
            # every dtype of a shape takes its turns in the same rounds, so
            # that the float32 over float64 ratio compares the same spells
            data = {dtype: make_data(shape[0], shape[1], dtype) for dtype in dtypes}
            prepared = []
            shape_results = {}
            references = {}
            for dtype in dtypes:
                X, y = data[dtype]
                results = {}
                for name in names:
                    if name in missing:
                        results[name] = Result(name, shape, dtype, "not available", reason=missing[name])
                        continue
                    r, run = prepare(name, shape, X, y, threads, args.epochs, min_time, args.optimizer)
                    results[name] = r
                    prepared.append((r, run))
                # the reference GEMM takes a turn in every round, so that
                # "% of GEMM" divides rates measured in the same spells
                references[dtype] = Result("gemm", shape, dtype, status="ok", epochs=1)
                prepared.append((references[dtype], gemm_run(dtype, gemm_size)))
                numba_result = results.get("numba")
                if (numba_result is not None and numba_result.ok
                        and products_applies(shape, args.optimizer)):
                    floor = Result("products", shape, dtype, status="ok", epochs=numba_result.epochs)
                    try:
                        prepared.append((floor, products_run(X, shape[2], threads)))
                    except Exception as exc:
                        _fail(floor, exc)
                    products[(shape, dtype)] = floor
                shape_results[dtype] = results
            time_round_robin(prepared, args.repeats, args.settle)
            del prepared, data, X, y
            for dtype, results in shape_results.items():
                reference = references[dtype]
                if reference.ok and reference.times:
                    gemm[(shape, dtype)] = gemm_rate(reference.seconds, gemm_size)
                    _log(f"{shape_label(shape):>16} {dtype}    GEMM: "
                         f"{gemm[(shape, dtype)]:10.4g} GFLOP/s in this shape's rounds")
                floor = products.get((shape, dtype))
                if floor is not None:
                    _log(f"{shape_label(shape):>16} {dtype} products: "
                         + (f"{1e3 * floor.seconds:10.4g} ms/epoch" if floor.ok else f"ERROR {floor.reason}"))
                for name, r in results.items():
                    if name in missing:
                        continue
                    if r.ok:
                        _log(f"{shape_label(shape):>16} {dtype} {name:>7}: {1e3 * r.seconds:10.4g} ms/epoch "
                             f"({r.epochs} epochs x {args.repeats}; warm-up {r.warmup_seconds:.2f} s)")
                    else:
                        _log(f"{shape_label(shape):>16} {dtype} {name:>7}: ERROR {r.reason}")
                ref = results.get("numpy")
                for r in results.values():
                    if (r.ok and ref is not None and ref.ok and r.check_loss is not None
                            and ref.check_loss is not None):
                        r.loss_rel_diff = abs(r.check_loss - ref.check_loss) / abs(ref.check_loss)
                all_results[(shape, dtype)] = results

    table = render_table(table_rows(all_results, gemm))
    dtype_ratios = dtype_ratio_lines(all_results)
    floor_lines = products_lines(products, all_results, gemm)
    problems = [f"{name}: not available: {why}" for name, why in missing.items()]
    errors = [r for results in all_results.values() for r in results.values() if r.status == "error"]
    errors += [r for r in products.values() if r.status == "error"]
    problems += [f"{r.name} at {shape_label(r.shape)} {r.dtype}: error: {r.reason}" for r in errors]
    # float32 steps differ from float64 ones by rounding of ~1e-7 relative; 1e-3 means a wrong gradient
    tolerance = {"float64": 1e-8, "float32": 1e-3}
    mismatches = [r for results in all_results.values() for r in results.values()
                  if r.loss_rel_diff is not None and r.loss_rel_diff > tolerance[r.dtype]]
    problems += [f"{r.name} at {shape_label(r.shape)} {r.dtype}: loss after one step differs from the "
                 f"NumPy backend's by {r.loss_rel_diff:.1e} (relative)" for r in mismatches]

    print(f"GEMM {gemm_size}^3, {threads} threads: "
          + ", ".join(f"{dt} {v:.1f} GFLOP/s" if isinstance(dt, str)
                      else f"{shape_label(dt[0])} {dt[1]} rounds {v:.1f}"
                      for dt, v in gemm.items()))
    print(f"GFLOP/s count 2 n h (2 d + 3 k) per epoch; vs X = X's ms/epoch / this row's (> 1: faster)")
    print(table)
    for line in dtype_ratios + floor_lines:
        print(line)
    for p in problems:
        print(f"note: {p}")

    if args.markdown:
        args_line = "python -m shallownet.bench " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(render_markdown(args_line, table, gemm, gemm_size, threads, blas_info, problems,
                                    args.optimizer, dtype_ratios, floor_lines, args.settle))
        _log(f"wrote {args.markdown}")
    if args.plot:
        why_not = write_plot(args.plot, all_results, dtypes, threads)
        _log(f"plot not written: {why_not}" if why_not else f"wrote {args.plot}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
