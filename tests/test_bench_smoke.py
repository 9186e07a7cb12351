"""`python -m shallownet.bench` runs end to end (a quick preset, 2 epochs, 1 repeat), its
timing takes the per-epoch slope, and benches/contention.py parses its options and runs."""

import importlib.util
import math
import os
import subprocess
import sys
import time

import pytest

import shallownet
from shallownet.backends import BACKENDS
from shallownet import bench
from shallownet.bench import PRESETS, shape_label

QUICK_SHAPES = [shape_label(s).replace("x", "×") for s in PRESETS["quick"].shapes]


def _results_table(markdown):
    """The rows of the table under '## Results' as dicts keyed by the header."""
    lines = markdown.split("## Results", 1)[1].splitlines()
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in table[2:]]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    markdown, plot = out / "bench.md", out / "bench.png"
    # the child must import the same shallownet as this process (installed or from src/)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(shallownet.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "shallownet.bench", "--shapes", "quick", "--epochs", "2", "--repeats", "1",
         "--gemm-size", "64",
         "--markdown", str(markdown), "--plot", str(plot)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout}\n{proc.stderr}"
    return markdown, plot, proc


def test_markdown_has_a_timed_row_per_available_backend(bench_run):
    markdown, _, _ = bench_run
    text = markdown.read_text(encoding="utf-8")
    for section in ("## Machine", "## Versions", "## Method", "## Results"):
        assert section in text
    rows = _results_table(text)
    available = shallownet.available_backends()
    assert "numpy" in available
    for backend in available:
        for shape in QUICK_SHAPES:
            matches = [r for r in rows if r["impl"] == backend and r["shape n×d×h"] == shape
                       and r["dtype"] == "float64"]
            assert len(matches) == 1, (backend, shape, matches)
            if matches[0]["ms/epoch"] == "noisy":  # 2 epochs' difference lost in a busy machine's jitter
                continue
            ms = float(matches[0]["ms/epoch"])  # a number, not "error" or "not available"
            assert math.isfinite(ms) and ms > 0, (backend, shape, ms)
            assert math.isfinite(float(matches[0]["ms/fit fixed"]))
            assert float(matches[0]["GFLOP/s"]) > 0
    for backend in set(BACKENDS) - set(available):  # listed, never timed
        missing = [r for r in rows if r["impl"] == backend]
        assert missing and all(r["ms/epoch"] == "not available" for r in missing), missing
    assert not any(r["ms/epoch"] == "error" for r in rows)


def test_plot_written(bench_run):
    _, plot, proc = bench_run
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed: the bench writes no plot")
    assert plot.exists(), proc.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _timed_rows(out, shape):
    """(impl, dtype) -> ms/epoch cell of the printed table's rows at ``shape``."""
    label = shape.replace("x", "×")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith(f"| {label} ")]
    return {(row[2], row[1]): row[4] for row in rows}


def test_both_dtypes_share_their_rounds_and_report_the_ratio(capsys):
    assert bench.main(["--shapes", "300x3x4", "--dtype", "both", "--epochs", "50", "--repeats", "3",
                       "--gemm-size", "64", "--settle", "0", "--backends", "numpy", "cython"]) == 0
    out = capsys.readouterr().out
    cells = _timed_rows(out, "300x3x4")
    assert set(cells) == {(i, t) for i in ("numpy", "cython") for t in ("float64", "float32")}
    assert all(c == "noisy" or float(c) > 0 for c in cells.values()), cells
    # a row whose slope drowned in a busy machine's jitter has no ratio
    expected = {i for i in ("numpy", "cython") if "noisy" not in (cells[i, "float64"], cells[i, "float32"])}
    ratios = [line for line in out.splitlines() if line.startswith("- float64 over float32 time at 300x3x4")]
    assert len(ratios) == (1 if expected else 0), out
    if expected:
        ratio = dict(cell.rsplit(" ", 1) for cell in ratios[0].split(": ", 1)[1].split(", "))
        assert set(ratio) == expected
        assert all(float(v) > 0 for v in ratio.values())


def test_products_floor_is_timed_at_the_gemm_bound_shapes_only(capsys):
    assert bench.main(["--shapes", "2100x64x64", "300x3x4", "--epochs", "20", "--repeats", "2",
                       "--gemm-size", "64", "--settle", "0", "--backends", "numba", "cython"]) == 0
    out, err = capsys.readouterr()
    floors = [line for line in out.splitlines() if line.startswith("- the two d×h products alone")]
    # d x h = 4096 is where the compiled backends take BLAS tiles; 300x3x4 is not
    assert all(" at 2100x64x64 float64 " in line for line in floors), out
    if "products: NOISY" in err:
        return
    assert len(floors) == 1, out
    ms = float(floors[0].split("): ", 1)[1].split(" ms/epoch")[0])
    assert ms > 0
    cells = floors[0].split("the backends at ", 1)[1].removesuffix(" of that speed").split(", ")
    timed = {name for (name, _), c in _timed_rows(out, "2100x64x64").items() if c != "noisy"}
    fractions = dict(cell.split(" ") for cell in cells) if timed else {}
    assert set(fractions) == timed
    assert all(float(v.rstrip("%")) > 0 for v in fractions.values())


def test_every_turn_waits_for_the_previous_ones_threads_and_times_1_E_2E(monkeypatch):
    from shallownet.bench import timing
    events = []
    real_sleep = time.sleep
    monkeypatch.setattr(timing.time, "sleep", lambda s: events.append(("sleep", s)))

    def make_run(name):
        def run(epochs):
            events.append((name, epochs))
            real_sleep(1e-4 * epochs)  # the real clock: a positive slope
        return run

    def prepared():
        runs = [(bench.Result(name, (1, 1, 1), "float64", status="ok", epochs=3), make_run(name))
                for name in ("a", "b")]
        return runs + [(bench.Result("gemm", (1, 1, 1), "float64", status="ok", epochs=0), make_run("g"))]
    runs = prepared()
    bench.time_round_robin(runs, 2, settle=0.25)
    turn = [("sleep", 0.25), ("a", 1), ("a", 3), ("a", 6), ("sleep", 0.25), ("b", 1), ("b", 3), ("b", 6),
            ("sleep", 0.25), ("g", 1)]
    assert events == turn * 2
    assert all(len(result.times) == 2 for result, _ in runs)
    assert [len(result.one_epoch_times) for result, _ in runs] == [2, 2, 0]
    events.clear()
    bench.time_round_robin(prepared(), 1, settle=0)
    assert events == [e for e in turn if e[0] != "sleep"]


class _FakeFit:
    """A fit of e epochs that takes ``fixed + e * per_epoch`` seconds on a fake clock."""

    def __init__(self, monkeypatch, fixed, per_epoch, jitter=()):
        from shallownet.bench import timing
        self.now, self.fixed, self.per_epoch = 0.0, fixed, per_epoch
        self.jitter = list(jitter)
        monkeypatch.setattr(timing.time, "perf_counter", lambda: self.now)

    def __call__(self, epochs):
        self.now += self.fixed + epochs * self.per_epoch + (self.jitter.pop(0) if self.jitter else 0.0)


def test_the_slope_cancels_a_fits_fixed_cost(monkeypatch):
    # a fit's fixed cost of 3 ms over epochs of 30 us: the small-shape case that
    # per-call division turned into numba/cython looking slower than NumPy
    run = _FakeFit(monkeypatch, fixed=3e-3, per_epoch=30e-6)
    epochs = bench.choose_epochs(run, min_time=0.05)
    assert abs(epochs * 30e-6 - 0.05) < 0.05 * 0.01, epochs
    result = bench.Result("x", (1000, 1, 16), "float64", status="ok", epochs=epochs)
    bench.time_round_robin([(result, run)], 3, settle=0)
    assert result.seconds == pytest.approx(30e-6)
    assert result.fixed_seconds == pytest.approx(3e-3)


def test_choosing_epochs_is_not_fooled_by_jitter_of_the_fixed_cost(monkeypatch):
    # the third 1-epoch call is 4 ms late: the median of three ignores it, and
    # the probe grows until its epochs outweigh the fixed cost
    run = _FakeFit(monkeypatch, fixed=3e-3, per_epoch=30e-6, jitter=[0.0, 0.0, 4e-3, 2e-3])
    epochs = bench.choose_epochs(run, min_time=0.05)
    assert 0.05 * 0.8 < epochs * 30e-6 < 0.05 * 1.25, epochs


def test_a_fit_longer_than_min_time_still_spans_several_epochs(monkeypatch):
    # one epoch against the jitter of two whole fits is no reading: E never
    # drops below MIN_EPOCHS, so every slope spans that many epochs
    run = _FakeFit(monkeypatch, fixed=1e-3, per_epoch=0.2)
    E = bench.timing.MIN_EPOCHS
    assert E >= 3
    assert bench.choose_epochs(run, min_time=0.1) == E
    calls = []

    def logged(epochs):
        calls.append(epochs)
        run(epochs)
    result = bench.Result("x", (1, 1, 1), "float64", status="ok", epochs=E)
    bench.time_round_robin([(result, logged)], 2, settle=0)
    assert calls == [1, E, 2 * E] * 2
    assert result.seconds == pytest.approx(0.2)
    assert result.fixed_seconds == pytest.approx(1e-3)


@pytest.mark.parametrize("option", ["--settle", "--min-time"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_durations_must_be_finite_non_negative_numbers(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.build_parser().parse_args([option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err
    assert getattr(bench.build_parser().parse_args([option, "0.5"]), option[2:].replace("-", "_")) == 0.5


CONTENTION_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "benches", "contention.py")


@pytest.mark.skipif(not os.path.exists(CONTENTION_SCRIPT), reason="benches/ is not in this tree")
def test_contention_script_runs_every_part_on_tiny_shapes(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("joblib")
    if "cython" not in shallownet.available_backends():
        pytest.skip("the cython backend is not available")
    markdown = tmp_path / "contention.md"
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(shallownet.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, CONTENTION_SCRIPT, "--quick", "--busy", "1", "--repeats", "1",
         "--backends", "cython", "--min-time", "0.01", "--markdown", str(markdown)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"contention.py failed:\n{proc.stdout}\n{proc.stderr}"
    text = markdown.read_text(encoding="utf-8")
    for heading in ("## A fit alone and under contention", "## Fits side by side", "## Fixed costs"):
        assert heading in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    # 2 fits x (cython, sklearn); GridSearchCV and joblib; 2 call shapes; cython and sklearn's fixed cost
    assert sum(" | cython | " in r or " | sklearn | " in r for r in rows if "×" in r) == 4
    assert sum(r.startswith(("| GridSearchCV", "| joblib")) for r in rows) == 2
    assert sum(r.startswith(("| cython |", "| sklearn |")) and "error" not in r for r in rows) == 2
