"""Fits on a busy machine, fits run side by side, and what small calls cost.

    python benches/contention.py                      # all three parts, ~2-4 minutes on 2 cores
    python benches/contention.py --parts fixed --repeats 5 --markdown fixed.md
    python benches/contention.py --quick --busy 1     # a smoke run in seconds (tiny shapes)

Every implementation runs with its default threads, as a user runs it.

- contention: the same fit alone and with ``--busy`` processes spinning
  (one per usable core by default; started and stopped here, one set per
  repeat), for shallownet's compiled backends and scikit-learn's
  MLPRegressor: minibatch Adam (batches of 200) at (4000, 20) with 100
  hidden units, and full-batch gradient descent at (100000, 10, 32).
  Reported: median seconds alone, with the busy processes, and the
  slow-down (their ratio). A fit that gets its fair share of the cores
  slows down ~2x with one busy process per core.
- parallel: ``GridSearchCV`` over ``shallownet.ShallowNetRegressor`` with
  ``n_jobs=1`` and ``n_jobs=2``, and joblib over 8 small fits (1000, 10, 16)
  one after another and 2 at a time, of 200 and 2000 epochs; > 1 in the
  speed-up column means running side by side paid.
- fixed: ``shallownet.loss_and_gradients`` and an ``Evaluator``'s call at
  (100, 5, 8) and (10, 5, 8), and a fit's fixed cost at (1000, 1, 16) against
  scikit-learn's, measured as ``python -m shallownet.bench`` does (a fit of
  1 epoch less the per-epoch slope).

Each time is a median over ``--repeats``, the two sides of a comparison
interleaved (A, B, A, B, ...). Output: Markdown on stdout (and --markdown).
"""

import argparse
import datetime
import statistics
import subprocess
import sys
import time
import warnings

import shallownet
from shallownet.bench import cases, report, timing

PARTS = ("contention", "parallel", "fixed")
COMPILED = ("cython", "numba")
# (label, n, d, h, optimizer, epochs): a fit of ~0.1-3 s alone on this machine kind
CONTENTION_CASES = (("Adam, batches of 200", 4000, 20, 100, "adam", 20),
                    ("full-batch gd", 100000, 10, 32, "gd", 20))
QUICK_CONTENTION_CASES = (("Adam, batches of 200", 400, 5, 8, "adam", 2),
                          ("full-batch gd", 2000, 5, 8, "gd", 2))
SMALL_FIT = (1000, 10, 16)     # joblib's fits and GridSearchCV's data
# scikit-learn's default max_iter (fits of a few ms, where joblib's dispatch
# of a task costs about as much as the fit), and ten times that
SMALL_EPOCHS = (200, 2000)
GRID = {"hidden": [8, 16], "alpha": [0.0, 1e-3]}   # with cv=3: 12 fits
CALL_SHAPES = ((100, 5, 8), (10, 5, 8))
FIXED_COST_SHAPE = (1000, 1, 16)
# the busy processes need a moment to start spinning (a Python start-up, ~30 ms)
BUSY_START_SECONDS = 0.3


class Busy:
    """``count`` processes spinning on a core each while the block runs."""

    def __init__(self, count):
        self.count = count
        self.procs = []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(self.count)]
        if self.procs:
            time.sleep(BUSY_START_SECONDS)
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []


def log(message):
    print(message, file=sys.stderr, flush=True)


def seconds(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def shallownet_fit(backend, X, y, hidden, optimizer, epochs):
    options = dict(hidden=hidden, epochs=epochs, backend=backend, random_state=0)
    if optimizer == "adam":
        options.update(optimizer="adam", learning_rate=0.001, batch_size=200)
    return lambda: shallownet.fit(X, y, **options)


def sklearn_fit(X, y, hidden, optimizer, epochs):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    if optimizer == "adam":
        settings = dict(solver="adam", batch_size=200, learning_rate_init=0.001)
    else:
        settings = dict(solver="sgd", batch_size=X.shape[0], learning_rate_init=0.01, momentum=0.0,
                        alpha=0.0, shuffle=False)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is reached on purpose
            MLPRegressor(hidden_layer_sizes=(hidden,), max_iter=epochs, tol=0.0,
                         n_iter_no_change=2**31 - 1, random_state=0, **settings).fit(X, y)
    return run


def contention_part(args, implementations):
    lines = ["## A fit alone and under contention", "",
             f"{args.busy} busy process(es) (`while True: pass`), one set per repeat; default threads.", "",
             "| fit | n×d×h | epochs | impl | alone s | busy s | slow-down |",
             "|---|---|---|---|---|---|---|"]
    fits = {}
    for label, n, d, h, optimizer, epochs in (QUICK_CONTENTION_CASES if args.quick else CONTENTION_CASES):
        X, y = cases.make_data(n, d)
        for name in implementations:
            run = (sklearn_fit(X, y, h, optimizer, epochs) if name == "sklearn"
                   else shallownet_fit(name, X, y, h, optimizer, epochs))
            run()  # warm-up: compilation, first touch
            fits[(label, (n, d, h), epochs, name)] = run
    alone = {key: [] for key in fits}
    busy = {key: [] for key in fits}
    for _ in range(args.repeats):
        for key, run in fits.items():
            alone[key].append(seconds(run))
        with Busy(args.busy):
            for key, run in fits.items():
                busy[key].append(seconds(run))
    for key in fits:
        label, shape, epochs, name = key
        a, b = statistics.median(alone[key]), statistics.median(busy[key])
        log(f"contention: {label} {name}: {a:.3f} s alone, {b:.3f} s busy")
        lines.append(f"| {label} | {cases.shape_label(shape).replace('x', '×')} | {epochs} | {name} | "
                     f"{a:.3f} | {b:.3f} | {b / a:.2f} |")
    return lines


def parallel_part(args, backends):
    from joblib import Parallel, delayed
    from sklearn.model_selection import GridSearchCV

    n, d, h = (200, 5, 8) if args.quick else SMALL_FIT
    epoch_counts = (5,) if args.quick else SMALL_EPOCHS
    X, y = cases.make_data(n, d)
    lines = ["## Fits side by side", "",
             f"GridSearchCV(shallownet.ShallowNetRegressor(epochs=E), {GRID}, cv=3) at {n}×{d}; "
             f"joblib (loky) over 8 fits of {cases.shape_label((n, d, h)).replace('x', '×')}, "
             "E epochs each. Speed-up: n_jobs=1's time over n_jobs=2's.", "",
             "| what | E | backend | n_jobs=1 s | n_jobs=2 s | speed-up |", "|---|---|---|---|---|---|"]
    for epochs in epoch_counts:
        for backend in backends:
            def grid(n_jobs):
                estimator = shallownet.ShallowNetRegressor(epochs=epochs, backend=backend,
                                                           random_state=0)
                return lambda: GridSearchCV(estimator, GRID, cv=3, n_jobs=n_jobs).fit(X, y)

            def many(n_jobs):
                return lambda: Parallel(n_jobs=n_jobs)(
                    delayed(shallownet.fit)(X, y, hidden=h, epochs=epochs, backend=backend,
                                            random_state=seed)
                    for seed in range(8))
            for what, make in (("GridSearchCV, 12 fits", grid), ("joblib, 8 fits", many)):
                runs = {1: make(1), 2: make(2)}
                runs[2]()  # warm-up: the workers start and load the compiled kernels
                runs[1]()
                times = {1: [], 2: []}
                for _ in range(args.repeats):
                    for jobs, run in runs.items():
                        times[jobs].append(seconds(run))
                one, two = statistics.median(times[1]), statistics.median(times[2])
                log(f"parallel: {what}, {epochs} epochs, {backend}: {one:.3f} s with n_jobs=1, "
                    f"{two:.3f} s with 2")
                lines.append(f"| {what} | {epochs} | {backend} | {one:.3f} | {two:.3f} | "
                             f"{one / two:.2f} |")
    # what joblib itself costs: the same dispatch with nothing to run
    empty = {jobs: statistics.median(seconds(lambda: Parallel(n_jobs=jobs)(
        delayed(int)(seed) for seed in range(8))) for _ in range(max(args.repeats, 3)))
        for jobs in (1, 2)}
    log(f"parallel: 8 empty tasks: {empty[1]:.4f} s with n_jobs=1, {empty[2]:.4f} s with 2")
    lines += ["", f"joblib's own cost: 8 empty tasks take {empty[2] * 1e3:.1f} ms with n_jobs=2 "
              f"({empty[1] * 1e3:.2f} ms with n_jobs=1)."]
    return lines


def fixed_part(args, backends):
    lines = ["## Fixed costs", "",
             "Per call (median over repeats of a loop of calls): `shallownet.loss_and_gradients`, "
             "which validates X and y each time, and a `shallownet.Evaluator` built once on them:",
             "", "| n×d×h | " + " | ".join(f"{b} loss_and_gradients | {b} Evaluator" for b in backends)
             + " |", "|---|" + "---|" * (2 * len(backends))]
    calls = 20 if args.quick else 200
    for n, d, h in CALL_SHAPES:
        X, y = cases.make_data(n, d)
        params = cases.initial_params(d, h, X.dtype)
        cells = []
        for backend in backends:
            evaluate = shallownet.Evaluator(X, y, backend=backend)
            for what, call in (("loss_and_gradients",
                                lambda: shallownet.loss_and_gradients(params, X, y, backend=backend)),
                               ("Evaluator", lambda: evaluate(params))):
                def loop():
                    for _ in range(calls):
                        call()
                loop()  # warm-up
                per_call = statistics.median(seconds(loop) for _ in range(args.repeats)) / calls
                log(f"fixed: {what} {backend} {(n, d, h)}: {1e6 * per_call:.1f} us a call")
                cells.append(f"{1e6 * per_call:.1f} µs")
        lines.append(f"| {cases.shape_label((n, d, h)).replace('x', '×')} | " + " | ".join(cells) + " |")

    shape = (200, 1, 4) if args.quick else FIXED_COST_SHAPE
    X, y = cases.make_data(shape[0], shape[1])
    names = list(backends) + ["sklearn"]
    prepared = [timing.prepare(name, shape, X, y, cases.usable_cores(), None, args.min_time)
                for name in names]
    timing.time_round_robin(prepared, args.repeats)
    lines += ["", f"A fit's fixed cost at {cases.shape_label(shape).replace('x', '×')} (full-batch gd, "
              f"{cases.usable_cores()} threads; t(1 epoch) less the per-epoch slope, "
              "as `python -m shallownet.bench`):", "",
              "| impl | ms/fit fixed | ms/epoch |", "|---|---|---|"]
    for result, _ in prepared:
        if result.ok:
            lines.append(f"| {result.name} | {1e3 * result.fixed_seconds:.3f} | {1e3 * result.seconds:.4f} |")
        else:
            lines.append(f"| {result.name} | {result.status}: {result.reason} | – |")
    return lines


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per case (medians)")
    parser.add_argument("--busy", type=int, default=cases.usable_cores(),
                        help="busy processes during the contended fits (default: one per usable core)")
    parser.add_argument("--backends", nargs="+", choices=("numpy",) + COMPILED, default=list(COMPILED),
                        help="shallownet backends (default: the compiled ones)")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds of epochs per timed fit for the fixed cost (as the bench's)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and epochs: a smoke run")
    parser.add_argument("--markdown", metavar="PATH", help="also write the Markdown here")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.busy < 0:
        build_parser().error("--repeats must be >= 1 and --busy >= 0")
    backends = [b for b in args.backends if b in shallownet.available_backends()]
    lines = ["# shallownet under contention, side by side, and its fixed costs", "",
             f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
             f"CPU: {report.cpu_model()}, {cases.usable_cores()} usable cores; "
             f"shallownet {shallownet.__version__}, "
             + ", ".join(f"{k} {v}" for k, v in report.versions().items()
                         if k in ("numpy", "numba", "scikit-learn")) + ".  ",
             "Command: `python benches/contention.py "
             + " ".join(argv if argv is not None else sys.argv[1:]) + "`",
             ""]
    if "contention" in args.parts:
        lines += contention_part(args, backends + ["sklearn"]) + [""]
    if "parallel" in args.parts:
        lines += parallel_part(args, backends) + [""]
    if "fixed" in args.parts:
        lines += fixed_part(args, backends) + [""]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
