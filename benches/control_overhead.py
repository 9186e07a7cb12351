"""What a callback or a progress bar costs per epoch, against a plain fit.

    python benches/control_overhead.py [--repeats R] [--backends cython numba]

A callback returns from the compiled loop every ``callback_every`` epochs and
``verbose=1`` every ``epochs // 100`` epochs (``shallownet._training``). This
times, interleaved in one process, plain fits and the same fits with a
callback (every 1 and every 10 epochs) and with ``verbose=1``, and prints the
median per-epoch time of each and its ratio to the plain fit, as Markdown.
Full-batch gradient descent, tanh, float64, the machine's threads.
"""

import argparse
import contextlib
import io
import time

import numpy as np

import shallownet

# (n, d, h) -> epochs per fit: ~50 ms of training, a fifth of it or more per
# callback return at the smallest shape
SHAPES = {(1000, 1, 16): 2000, (10000, 10, 32): 200, (100000, 10, 32): 20}
VARIANTS = {
    "plain": {},
    "callback_every=1": dict(callback=lambda epoch, loss, params: False, callback_every=1),
    "callback_every=10": dict(callback=lambda epoch, loss, params: False, callback_every=10),
    "verbose=1": dict(verbose=1),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backends", nargs="+", default=["cython", "numba"])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| backend | shape n×d×h | epochs | variant | ms/epoch | vs plain |")
    print("|---|---|---|---|---|---|")
    for backend in args.backends:
        for (n, d, h), epochs in SHAPES.items():
            X = rng.standard_normal((n, d))
            y = np.sin(X.sum(axis=1))
            times = {name: [] for name in VARIANTS}
            for repeat in range(args.repeats + 1):      # the first round warms up
                for name, extra in VARIANTS.items():
                    with contextlib.redirect_stdout(io.StringIO()), \
                            contextlib.redirect_stderr(io.StringIO()):
                        start = time.perf_counter()
                        shallownet.fit(X, y, hidden=h, epochs=epochs, learning_rate=0.01,
                                       random_state=0, backend=backend, **extra)
                        elapsed = time.perf_counter() - start
                    if repeat:
                        times[name].append(elapsed / epochs)
            plain = np.median(times["plain"])
            for name, values in times.items():
                median = np.median(values)
                print(f"| {backend} | {n}×{d}×{h} | {epochs} | {name} | {median * 1e3:.4g} "
                      f"| {median / plain:.3f} |")


if __name__ == "__main__":
    main()
