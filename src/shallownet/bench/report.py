"""The results as a table, and as Markdown with the machine and versions."""

import datetime
import importlib
import importlib.metadata
import math
import os
import platform

import shallownet

from .cases import (ACTIVATION, ADAM_BATCH, ADAM_LEARNING_RATE, BACKEND_NAMES, K, LEARNING_RATE,
                    WARMUP_EPOCHS, shape_label, usable_cores)
from .timing import SETTLE_SECONDS


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


TABLE_HEADER = ("shape n×d×h", "dtype", "impl", "epochs", "ms/epoch", "spread", "ms/fit fixed",
                "vs numpy", "vs torch", "vs sklearn", "GFLOP/s", "% of GEMM", "loss Δ vs numpy")


def table_rows(all_results, gemm):
    """One row per (shape, dtype, implementation); ratios are speed-ups (other's
    time / this time). ``gemm`` maps (shape, dtype) to the reference GEMM rate
    timed in that shape's round-robin, or dtype to the run's rate."""
    rows = []
    for (shape, dtype), results in all_results.items():
        for name, r in results.items():
            label = shape_label(shape).replace("x", "×")
            diff = "–" if r.loss_rel_diff is None else f"{r.loss_rel_diff:.1e}"
            if not r.ok:
                rows.append((label, dtype, name, "–", r.status) + ("–",) * 7 + (diff,))
                continue
            spread = "–" if r.spread is None else f"{100 * r.spread:.0f}%"
            rate = r.gflops()
            reference = gemm.get((shape, dtype)) or gemm.get(dtype)
            fraction = f"{100 * rate / reference:.1f}%" if reference else "–"
            fixed = "–" if r.fixed_seconds is None else _fmt(1e3 * r.fixed_seconds, 3)
            rows.append((label, dtype, name, str(r.epochs), _fmt(1e3 * r.seconds, 4), spread, fixed,
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
    if "cython" not in shallownet.available_backends():
        return "Cython backend not available"
    # the extension's documented ISA string (docs/kernels.md)
    return getattr(importlib.import_module("shallownet._cython_train"), "ISA", "unknown")


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
                 if r.ok and name in wide and wide[name].ok]
        if cells:
            lines.append(f"- float64 over float32 time at {shape_label(shape)}: " + ", ".join(cells))
    return lines


def products_lines(products, all_results, gemm):
    """For every shape whose products alone were timed (``implementations.products_run``):
    their ms/epoch and rate (the epoch's GFLOP count), and each compiled
    backend's speed as a fraction of theirs (the same rounds)."""
    lines = []
    for (shape, dtype), floor in products.items():
        if not floor.ok:
            continue
        reference = gemm.get((shape, dtype))
        share = f", {100 * floor.gflops() / reference:.1f}% of GEMM" if reference else ""
        results = all_results.get((shape, dtype), {})
        cells = [f"{name} {100 * floor.seconds / r.seconds:.1f}%" for name, r in results.items()
                 if name in BACKEND_NAMES and name != "numpy" and r.ok]
        lines.append(f"- the two d×h products alone at {shape_label(shape)} {dtype} (X W1 and Xᵀ DZ, "
                     f"two BLAS calls, no elementwise work): {_fmt(1e3 * floor.seconds, 4)} ms/epoch"
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
        "X standard normal, y = sin(X w) + 0.1 noise, the same starting weights for shallownet and "
        "PyTorch. Each implementation: one warm-up call of "
        f"{WARMUP_EPOCHS} epochs (not timed; compilation excluded) and a choice of E (`epochs`) from "
        "probing pairs of calls; then `repeats` rounds in which every implementation takes one turn "
        "(so a slow spell of the machine hits all alike)"
        + (f", each turn {settle:g} s after the one before (so that it does not share the cores "
           "with the previous one's idle-spinning BLAS threads; the probes wait as long)" if settle else
           ", each turn straight after the one before (--settle 0)")
        + ". A turn makes three whole fits, of 1, E and 2E epochs: ms/epoch is the median over the "
        "rounds of (t(2E) - t(E)) / E, in which a fit's fixed cost cancels; ms/fit fixed is the "
        "median t(1) less one epoch (validation, set-up, first touch of the buffers); spread is "
        "(max - min) / median of the per-epoch times.",
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
