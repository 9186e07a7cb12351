"""The Numba backend compiles only what a fit runs (docs/kernels.md,
"Compiling on demand"): checked in a fresh interpreter with an empty Numba
cache, by which kernels hold a compiled signature afterwards. No timing is
asserted; the first-call cost is measured in benches/RESULTS.md."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

HANG_GUARD = 900

_REPORT = """
import json, numpy as np, shallownet
from shallownet._numba import batch, explicit, gemm, rows, steps
rng = np.random.default_rng(0)
X = rng.normal(size=({n}, {d})); y = rng.normal(size={n})
shallownet.fit(X, y, backend="numba", epochs=2, random_state=0, **{fit})
def count(f):
    return len(f.signatures)
print(json.dumps({{
    "explicit_tile": count(explicit._forward_unit),
    "gemm_tile": count(gemm._backward_units_k1) + count(gemm._backward_units_k1_from_a)
                 + count(gemm._backward_units),
    "parallel": count(batch._chunks_prange),
    "gather": count(rows.gather),
    "adam": count(steps._step_adam),
    "momentum": count(steps._step_momentum),
    "sgd": count(steps._step_sgd),
}}))
"""


def _compiled(tmp_path, n, d, fit):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    code = textwrap.dedent(_REPORT.format(n=n, d=d, fit=fit))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_default_fit_compiles_only_its_own_path(tmp_path):
    # (1000, 3) with 16 hidden units: explicit loops, one chunk, rows in
    # order, plain gradient descent
    got = _compiled(tmp_path, 1000, 3, "dict(hidden=16, n_threads=1)")
    assert got["explicit_tile"] == 1
    assert got["sgd"] >= 1
    for unused in ("gemm_tile", "parallel", "gather", "adam", "momentum"):
        assert got[unused] == 0, (unused, got)


def test_a_wide_shuffled_adam_fit_compiles_only_its_own_path(tmp_path):
    # (600, 40) with 64 hidden units: GEMM tiles; Adam on shuffled batches of
    # 200, one chunk each, so no parallel region even with two threads
    got = _compiled(tmp_path, 600, 40,
                    "dict(hidden=64, optimizer='adam', batch_size=200, n_threads=2)")
    assert got["gemm_tile"] >= 1
    assert got["gather"] == 1
    assert got["adam"] >= 1
    for unused in ("explicit_tile", "parallel", "sgd", "momentum"):
        assert got[unused] == 0, (unused, got)


def test_the_parallel_path_is_compiled_when_a_batch_has_several_chunks(tmp_path):
    got = _compiled(tmp_path, 20000, 3, "dict(hidden=16, n_threads=2)")
    assert got["parallel"] == 1
    assert got["gemm_tile"] == 0
