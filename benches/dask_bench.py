"""Per-epoch time of shallownet.dask.fit on a LocalCluster against a local fit.

    python benches/dask_bench.py [--shapes 1e6,10,64 4e6,20,64] [--epochs 20] [--repeats 3]

Starts a LocalCluster of 2 worker processes x 1 thread and times, interleaved
(local, dask, local, dask, ...), full-batch gradient descent (tanh, float64,
the "auto" backend) by ``shallownet.fit`` with 2 threads and by
``shallownet.dask.fit`` on the same rows split into one block per worker.
An epoch's time is the gap between consecutive callbacks (the callback
returns every epoch in both), median over the epochs after the first two and
over the repeats. Also printed per shape:

- ``worker compute``: one block's ``loss_and_gradients`` called directly
  in this process with 1 thread, times the blocks a worker holds: the
  compute a worker does per epoch;
- ``overhead``: the dask epoch minus that: the round trip, the
  (de)serialisation of the parameters and the partial gradients, the
  reduction and the step in the client;
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
    from shallownet._activations import ACTIVATIONS
    from shallownet.backends import resolve_backend, thread_limits

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    backend, module = resolve_backend("auto")
    print(f"backend {backend}, {args.workers} workers x 1 thread against a local fit with "
          f"{args.workers} threads; {args.epochs} epochs a fit, {args.repeats} repeats\n")
    print("| n×d×h | blocks | local ms/epoch | dask ms/epoch | dask/local | worker compute ms "
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
        local, dist, setup = [], [], []
        for _ in range(args.repeats):
            local.append(epoch_times(lambda **kw: shallownet.fit(X, y, n_threads=args.workers,
                                                                 **settings, **kw),
                                     args.epochs)[0])
            seconds, first = epoch_times(lambda **kw: shallownet.dask.fit(Xd, yd, client=client,
                                                                          **settings, **kw),
                                         args.epochs)
            dist.append(seconds)
            setup.append(first - seconds)
        # the compute of one part, as a worker runs it
        part = np.ascontiguousarray(X[:block])
        Y = np.ascontiguousarray(y[:block].reshape(-1, 1))
        w = np.ones(block)
        params = shallownet.fit(X[:10], y[:10], hidden=h, epochs=1, random_state=0).params
        code = ACTIVATIONS["tanh"].code
        calls = []
        with thread_limits(module, 1):
            for _ in range(max(3, args.repeats)):
                t = time.perf_counter()
                module.loss_and_gradients(part, Y, w, params, code, 0.0, 1)
                calls.append(time.perf_counter() - t)
        local_ms = statistics.median(local) * 1e3
        dist_ms = statistics.median(dist) * 1e3
        # each worker runs blocks / workers blocks an epoch, one after another
        compute_ms = statistics.median(calls) * 1e3 * -(-blocks // args.workers)
        print(f"| {n}×{d}×{h} | {blocks} | {local_ms:.2f} | {dist_ms:.2f} | "
              f"{dist_ms / local_ms:.2f} | {compute_ms:.2f} | {dist_ms - compute_ms:.2f} | "
              f"{statistics.median(setup):.2f} |", flush=True)
        del Xd, yd, x_parts, y_parts
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
