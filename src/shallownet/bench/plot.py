"""The speed-up over the NumPy backend as a PNG (matplotlib, when installed)."""

import math

from .cases import ALL_IMPLEMENTATIONS, K, shape_label
from .report import cpu_model


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
