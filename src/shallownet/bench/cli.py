"""The command line: parse the options, time every shape, print and write the results."""

import argparse
import math
import sys

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from .cases import (ADAM_BATCH, ALL_IMPLEMENTATIONS, DTYPES, EXPLICIT_SHAPES_GEMM_SIZE,
                    EXPLICIT_SHAPES_MIN_TIME, PRESETS, make_data, shape_label, usable_cores)
from .implementations import gemm_run, products_applies, products_run, unavailable_reason
from .plot import write_plot
from .report import dtype_ratio_lines, products_lines, render_markdown, render_table, table_rows
from .timing import (SETTLE_SECONDS, Result, choose_epochs, fail, gemm_gflops, gemm_rate, prepare,
                     time_round_robin)


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
        description="Time one epoch of shallownet.fit() per backend, against scikit-learn and PyTorch, "
                    "and each fit's fixed cost.")
    parser.add_argument("--shapes", nargs="+", default=["quick"], metavar="SHAPE",
                        help="preset 'quick' (seconds) or 'full', and/or shapes n x d x h like "
                             "1000x1x16 (default: quick)")
    parser.add_argument("--epochs", type=_positive_int_or("auto"), default=None, metavar="E|auto",
                        help="E: every repeat times fits of 1, E and 2E epochs (default auto: E epochs last "
                             "--min-time)")
    parser.add_argument("--min-time", type=_non_negative_float, default=None, metavar="SECONDS",
                        help="with --epochs auto, how long E epochs should last "
                             f"(default: {PRESETS['quick'].min_time} for quick only, else "
                             f"{EXPLICIT_SHAPES_MIN_TIME})")
    parser.add_argument("--repeats", type=_positive_int, default=5,
                        help="timed turns per implementation and shape; the medians are reported (default 5)")
    parser.add_argument("--threads", type=_positive_int_or("all"), default=None, metavar="N|all",
                        help=f"threads for every implementation (default all: {usable_cores()} here)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float64")
    parser.add_argument("--optimizer", choices=("gd", "adam"), default="gd",
                        help="gd: the seed's full-batch gradient descent everywhere; adam: Adam on "
                             f"shuffled minibatches of {ADAM_BATCH} (scikit-learn's default MLPRegressor)")
    parser.add_argument("--backends", nargs="+", default=list(ALL_IMPLEMENTATIONS), metavar="NAME",
                        help=f"implementations to run, from {', '.join(ALL_IMPLEMENTATIONS)} (default all)")
    parser.add_argument("--settle", type=_non_negative_float, default=SETTLE_SECONDS, metavar="SECONDS",
                        help="pause before every implementation's turn and its probing, so that the previous "
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
            gemm[dtype] = gemm_gflops(gemm_run(dtype, gemm_size), gemm_size, min(args.repeats, 3))
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
                    r, run = prepare(name, shape, X, y, threads, args.epochs, min_time, args.optimizer,
                                     args.settle)
                    results[name] = r
                    prepared.append((r, run))
                # the reference GEMM takes a turn in every round, so that
                # "% of GEMM" divides rates measured in the same spells
                references[dtype] = Result("gemm", shape, dtype, status="ok", epochs=0)
                prepared.append((references[dtype], gemm_run(dtype, gemm_size)))
                compiled = [r for name, r in results.items() if name in ("numba", "cython")
                            and r.status == "ok"]
                if compiled and products_applies(shape, args.optimizer):
                    floor = Result("products", shape, dtype, status="ok")
                    try:
                        run = products_run(X, shape[2], threads)
                        floor.epochs = args.epochs or choose_epochs(run, min_time)
                        prepared.append((floor, run))
                    except Exception as exc:
                        fail(floor, exc)
                    products[(shape, dtype)] = floor
                shape_results[dtype] = results
            time_round_robin(prepared, args.repeats, args.settle)
            del prepared, data, X, y
            for dtype, results in shape_results.items():
                reference = references[dtype]
                if reference.ok:
                    gemm[(shape, dtype)] = gemm_rate(reference.seconds, gemm_size)
                    _log(f"{shape_label(shape):>16} {dtype}    GEMM: "
                         f"{gemm[(shape, dtype)]:10.4g} GFLOP/s in this shape's rounds")
                floor = products.get((shape, dtype))
                if floor is not None:
                    _log(f"{shape_label(shape):>16} {dtype} products: "
                         + (f"{1e3 * floor.seconds:10.4g} ms/epoch" if floor.ok
                            else f"{floor.status.upper()} {floor.reason}"))
                for name, r in results.items():
                    if name in missing:
                        continue
                    if r.ok:
                        _log(f"{shape_label(shape):>16} {dtype} {name:>7}: {1e3 * r.seconds:10.4g} ms/epoch, "
                             f"{1e3 * r.fixed_seconds:7.3g} ms/fit fixed ({r.epochs} epochs x "
                             f"{args.repeats}; warm-up {r.warmup_seconds:.2f} s)")
                    else:
                        _log(f"{shape_label(shape):>16} {dtype} {name:>7}: {r.status.upper()} {r.reason}")
                ref = results.get("numpy")
                for r in results.values():
                    # the warm-up's loss: compared whether or not the timings were usable
                    if r.check_loss is not None and ref is not None and ref.check_loss is not None:
                        r.loss_rel_diff = abs(r.check_loss - ref.check_loss) / abs(ref.check_loss)
                all_results[(shape, dtype)] = results

    table = render_table(table_rows(all_results, gemm))
    dtype_ratios = dtype_ratio_lines(all_results)
    floor_lines = products_lines(products, all_results, gemm)
    problems = [f"{name}: not available: {why}" for name, why in missing.items()]
    errors = [r for results in all_results.values() for r in results.values() if r.status == "error"]
    errors += [r for r in products.values() if r.status == "error"]
    problems += [f"{r.name} at {shape_label(r.shape)} {r.dtype}: error: {r.reason}" for r in errors]
    problems += [f"{r.name} at {shape_label(r.shape)} {r.dtype}: {r.reason}"
                 for results in all_results.values() for r in results.values() if r.status == "noisy"]
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
    print("ms/epoch = (t(2E) - t(E)) / E, ms/fit fixed = t(1) - ms/epoch (medians); GFLOP/s count "
          "2 n h (2 d + 3 k) per epoch; vs X = X's ms/epoch / this row's (> 1: faster)")
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
