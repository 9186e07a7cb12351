"""`python -m shallownet.bench` runs end to end: a quick preset, 2 epochs, 1 repeat."""

import importlib.util
import math
import os
import subprocess
import sys

import pytest

import shallownet
from shallownet.backends import BACKENDS
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
            ms = float(matches[0]["ms/epoch"])  # a number, not "error" or "not available"
            assert math.isfinite(ms) and ms > 0, (backend, shape, ms)
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


def test_both_dtypes_share_their_rounds_and_report_the_ratio(capsys):
    from shallownet import bench
    assert bench.main(["--shapes", "300x3x4", "--dtype", "both", "--epochs", "2", "--repeats", "2",
                       "--backends", "numpy", "cython"]) == 0
    out = capsys.readouterr().out
    ratios = [line for line in out.splitlines() if line.startswith("- float64 over float32 time at 300x3x4")]
    assert len(ratios) == 1, out
    cells = dict(cell.rsplit(" ", 1) for cell in ratios[0].split(": ", 1)[1].split(", "))
    assert set(cells) == {"numpy", "cython"}
    assert all(math.isfinite(float(v)) and float(v) > 0 for v in cells.values())


def test_products_floor_is_timed_at_the_gemm_bound_shapes_only(capsys):
    from shallownet import bench
    assert bench.main(["--shapes", "2100x64x64", "300x3x4", "--epochs", "2", "--repeats", "2",
                       "--backends", "numba", "cython"]) == 0
    out = capsys.readouterr().out
    floors = [line for line in out.splitlines() if line.startswith("- the two d×h products alone")]
    # d x h = 4096 takes the tall GEMM tiles; 300x3x4 does not
    assert len(floors) == 1 and " at 2100x64x64 float64 " in floors[0], out
    ms = float(floors[0].split("): ", 1)[1].split(" ms/epoch")[0])
    assert math.isfinite(ms) and ms > 0
    cells = floors[0].split("the backends at ", 1)[1].removesuffix(" of that speed").split(", ")
    fractions = dict(cell.split(" ") for cell in cells)
    assert set(fractions) == {"numba", "cython"}
    assert all(float(v.rstrip("%")) > 0 for v in fractions.values())


def test_every_timed_call_waits_for_the_previous_ones_threads(monkeypatch):
    from shallownet import bench
    events = []
    monkeypatch.setattr(bench.time, "sleep", lambda s: events.append(("sleep", s)))

    def make_run(name):
        def run(epochs):
            events.append((name, epochs))
        return run
    prepared = [(bench.Result(name, (1, 1, 1), "float64", status="ok", epochs=3), make_run(name))
                for name in ("a", "b")]
    bench.time_round_robin(prepared, 2, settle=0.25)
    assert events == [("sleep", 0.25), ("a", 3), ("sleep", 0.25), ("b", 3)] * 2
    assert all(len(result.times) == 2 for result, _ in prepared)
    events.clear()
    bench.time_round_robin(prepared, 1, settle=0)
    assert events == [("a", 3), ("b", 3)]


@pytest.mark.parametrize("option", ["--settle", "--min-time"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_durations_must_be_finite_non_negative_numbers(option, value, capsys):
    from shallownet import bench
    with pytest.raises(SystemExit) as exc:
        bench.build_parser().parse_args([option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err
    assert getattr(bench.build_parser().parse_args([option, "0.5"]), option[2:].replace("-", "_")) == 0.5
