"""Fit time of shallownet's drop-in against scikit-learn's MLPRegressor, side by side.

    python benches/sklearn_dropin.py [--repeats R] [--backends auto cython numba]
                                     [--n-threads N] [--cases NAME ...] [--settle S]

Each case fits scikit-learn's MLPRegressor and
``shallownet.neural_network.MLPRegressor`` with the same parameters and
random_state, interleaved (theirs, ours, theirs, ours, ...) in one process,
each after a pause of --settle seconds (the other library's idle BLAS
threads spin for ~0.1 s and took a core from the fit that followed: the
Adam fit at (20000, 20) took 0.17-0.53 s right after scikit-learn's,
0.15-0.18 s after 0.3 s), and prints as Markdown the median fit time of
each, their ratio, the lowest and highest ratio of a fit of theirs to the
fit of ours right after it (the spread the host's speed gives one
ratio), the number of epochs/iterations each ran and the largest
difference between the two fitted models' parameters. The cases (issue 19): scikit-learn's defaults
(adam, relu, 100 units, batches of 200) at (20000, 20); solver="lbfgs" at
the same shape; both inside a Pipeline with StandardScaler on load_diabetes
and make_friedman1. Targets: >= 10x for adam, >= 5x for lbfgs.
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_diabetes, make_friedman1, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shallownet.neural_network import MLPRegressor

SETTLE_SECONDS = 0.25   # as python -m shallownet.bench --settle


def synthetic():
    X, y = make_regression(n_samples=20000, n_features=20, noise=10.0, random_state=0)
    return X, y / y.std()


def diabetes():
    return load_diabetes(return_X_y=True)


def friedman1():
    return make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=0)


# name -> (data, pipeline?, parameters beyond the defaults)
CASES = {
    "defaults (adam) (20000, 20)": (synthetic, False, {}),
    "lbfgs (20000, 20)": (synthetic, False, dict(solver="lbfgs")),
    "diabetes, Pipeline, adam": (diabetes, True, {}),
    "diabetes, Pipeline, lbfgs": (diabetes, True, dict(solver="lbfgs")),
    "friedman1, Pipeline, adam": (friedman1, True, {}),
    "friedman1, Pipeline, lbfgs": (friedman1, True, dict(solver="lbfgs")),
}


def build(cls, pipeline, params):
    est = cls(random_state=0, **params)
    return make_pipeline(StandardScaler(), est) if pipeline else est


def timed_fit(model, X, y, settle=0.0):
    time.sleep(settle)   # the previous fit's idle BLAS threads: see the docstring
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, y)
        return time.perf_counter() - start


def final(model):
    return model[-1] if hasattr(model, "steps") else model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS, metavar="SECONDS",
                        help="pause before every timed fit, so that the previous fit's idle "
                             "threads (OpenBLAS spins ~0.1 s after a call) are asleep "
                             f"(default {SETTLE_SECONDS}; 0: none)")
    parser.add_argument("--backends", nargs="+", default=["auto"])
    parser.add_argument("--n-threads", type=int, default=None,
                        help="the drop-in's n_threads (default: all usable cores)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    print("| case | engine | scikit-learn s | shallownet s | ratio | pairs' ratios "
          "| n_iter_ (theirs/ours) | max param diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        make_data, pipeline, params = CASES[name]
        X, y = make_data()
        for backend in args.backends:
            ours_params = dict(params, backend=backend, n_threads=args.n_threads)
            # one untimed fit each: imports, Numba compilation, first-touch pages
            warm = build(MLPRegressor, pipeline, dict(ours_params, max_iter=2))
            try:
                timed_fit(warm, X, y)
            except ValueError as exc:   # a backend that cannot run this solver yet
                reason = str(exc).split(";")[0]
                print(f"| {name} | {backend}: not run ({reason}) | | | | | | |", flush=True)
                continue
            theirs_times, ours_times = [], []
            for _ in range(args.repeats):
                theirs = build(SklearnMLPRegressor, pipeline, params)
                theirs_times.append(timed_fit(theirs, X, y, args.settle))
                ours = build(MLPRegressor, pipeline, ours_params)
                ours_times.append(timed_fit(ours, X, y, args.settle))
            a, b = final(theirs), final(ours)
            diff = max(float(np.max(np.abs(p - q))) for p, q in
                       zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))
            t_theirs, t_ours = statistics.median(theirs_times), statistics.median(ours_times)
            pairs = [t / o for t, o in zip(theirs_times, ours_times)]
            print(f"| {name} | {b.engine_} | {t_theirs:.3f} | {t_ours:.3f} "
                  f"| {t_theirs / t_ours:.1f}x | {min(pairs):.1f}-{max(pairs):.1f}x "
                  f"| {a.n_iter_}/{b.n_iter_} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
