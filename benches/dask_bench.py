"""Per-epoch time of shallownet.dask.fit on a LocalCluster against a local fit.

    python benches/dask_bench.py [--shapes 1e6,10,64 4e6,20,64] [--epochs 20] [--repeats 3]

Starts a LocalCluster of 2 worker processes x 1 thread and times, interleaved
(local, dask, local, dask, ...), full-batch gradient descent (tanh, float64,
the "auto" backend) by ``shallownet.fit`` with 2 threads and by
``shallownet.dask.fit`` on the same rows split into one block per worker.
An epoch's time is the gap between consecutive callbacks (the callback
returns every epoch in both), median over the epochs after the first two and
over the repeats. Also printed per shape:

- ``worker kernels``: the time the slowest worker spent in the backend's
  ``loss_and_gradients`` during an epoch, timed inside the workers (a
  wrapper installed for the bench); median over the epochs after the third;
- ``overhead``: the dask epoch minus that: the round trip, the
  (de)serialisation of the parameters and the partial sums, the reduction
  and the step in the client;
- ``setup``: ``shallownet.dask.fit`` up to its first epoch (validation on the
  workers, the evaluators' creation);
- rows at a tiny shape, where the dask epoch is almost all overhead, with
  one block per worker and eight.

Results go to stdout as Markdown; record them in benches/RESULTS.md.
"""

import argparse
import statistics
import time

import numpy as np


def parse_shape(text):
    n, d, h = text.split(",")
    return int(float(n)), int(d), int(h)


def epoch_times(fit, epochs):
    """(seconds per epoch, seconds to the first epoch's end) of one fit."""
    stamps = []
    start = time.perf_counter()
    fit(callback=lambda epoch, loss, params: stamps.append(time.perf_counter()) and False)
    gaps = np.diff(stamps)[2:]
    return float(np.median(gaps)), stamps[0] - start


def _time_kernels(backend):
    """On a worker: record (duration) of every call of the backend's kernel."""
    from shallownet.backends import resolve_backend
    module = resolve_backend(backend)[1]
    if not hasattr(module, "_bench_times"):
        kernel = module.loss_and_gradients

        def timed(*args):
            start = time.perf_counter()
            result = kernel(*args)
            module._bench_times.append(time.perf_counter() - start)
            return result
        module._bench_times = []
        module.loss_and_gradients = timed
    module._bench_times.clear()


def _kernel_times(backend):
    from shallownet.backends import resolve_backend
    return list(resolve_backend(backend)[1]._bench_times)


def dask_epoch_times(client, backend, fit, epochs):
    """(seconds per epoch, the slowest worker's kernel seconds per epoch,
    seconds to the first epoch's end) of one distributed fit."""
    client.run(_time_kernels, backend)
    seconds, first = epoch_times(fit, epochs)
    slowest = np.zeros(epochs)
    for calls in client.run(_kernel_times, backend).values():
        if calls:   # a worker's calls, epoch after epoch: its parts' kernels per epoch
            slowest = np.maximum(slowest, np.reshape(calls, (epochs, -1)).sum(axis=1))
    return seconds, float(np.median(slowest[3:])), first


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", type=parse_shape,
                        default=[parse_shape("1e6,10,64"), parse_shape("4e6,20,64")])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import shallownet
    import shallownet.dask
    from shallownet.backends import resolve_backend

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    backend = resolve_backend("auto")[0]
    print(f"backend {backend}, {args.workers} workers x 1 thread against a local fit with "
          f"{args.workers} threads; {args.epochs} epochs a fit, {args.repeats} repeats\n")
    print("| n×d×h | blocks | local ms/epoch | dask ms/epoch | dask/local | worker kernels ms "
          "| overhead ms | setup s |")
    print("|---|---|---|---|---|---|---|---|")
    # the tiny shape, where an epoch is almost all overhead, in few and many blocks
    shapes = [(2000, 10, 64, args.workers), (2000, 10, 64, 8 * args.workers)]
    shapes += [(n, d, h, args.workers) for n, d, h in args.shapes]
    for n, d, h, blocks in shapes:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, d))
        y = np.sin(X[:, : min(d, 3)]).sum(axis=1)
        block = -(-n // blocks)
        # one block per worker, sent once (not embedded in the graph)
        starts = range(0, n, block)
        addresses = sorted(client.scheduler_info()["workers"])
        x_parts, y_parts = [], []
        for i, s in enumerate(starts):
            where = [addresses[i % len(addresses)]]
            x_parts.append(client.scatter(X[s:s + block], workers=where))
            y_parts.append(client.scatter(y[s:s + block], workers=where))
        wait(x_parts + y_parts)
        Xd = da.concatenate([da.from_delayed(f, shape=(min(block, n - s), d), dtype=X.dtype)
                             for f, s in zip(x_parts, starts)])
        yd = da.concatenate([da.from_delayed(f, shape=(min(block, n - s),), dtype=y.dtype)
                             for f, s in zip(y_parts, starts)])
        settings = dict(hidden=h, epochs=args.epochs, random_state=0, learning_rate=0.01)
        local, dist, kernel, setup = [], [], [], []
        for _ in range(args.repeats):
            local.append(epoch_times(lambda **kw: shallownet.fit(X, y, n_threads=args.workers,
                                                                 **settings, **kw),
                                     args.epochs)[0])
            seconds, slowest, first = dask_epoch_times(
                client, backend,
                lambda **kw: shallownet.dask.fit(Xd, yd, client=client, **settings, **kw),
                args.epochs)
            dist.append(seconds)
            kernel.append(slowest)
            setup.append(first - seconds)
        local_ms = statistics.median(local) * 1e3
        dist_ms = statistics.median(dist) * 1e3
        kernel_ms = statistics.median(kernel) * 1e3
        print(f"| {n}×{d}×{h} | {blocks} | {local_ms:.2f} | {dist_ms:.2f} | "
              f"{dist_ms / local_ms:.2f} | {kernel_ms:.2f} | {dist_ms - kernel_ms:.2f} | "
              f"{statistics.median(setup):.2f} |", flush=True)
        del Xd, yd, x_parts, y_parts
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
