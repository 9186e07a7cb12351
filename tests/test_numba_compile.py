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
    "penalty": count(rows.sum_squares) + count(rows.add_scaled),
    "reduction": count(rows.sum_chunks),
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
    # (1000, 3) with 16 hidden units: explicit loops, batches of one chunk
    # (no reduction of chunks), plain gradient descent, no penalty
    got = _compiled(tmp_path, 1000, 3, "dict(hidden=16, n_threads=1)")
    assert got["explicit_tile"] == 1
    assert got["sgd"] >= 1
    for unused in ("gemm_tile", "parallel", "gather", "adam", "momentum", "penalty",
                   "reduction"):
        assert got[unused] == 0, (unused, got)


def test_a_wide_shuffled_adam_fit_compiles_only_its_own_path(tmp_path):
    # (600, 40) with 64 hidden units: GEMM tiles; Adam on shuffled batches of
    # 200, one chunk each, so no parallel region even with two threads
    got = _compiled(tmp_path, 600, 40,
                    "dict(hidden=64, optimizer='adam', batch_size=200, n_threads=2, alpha=1e-4)")
    assert got["gemm_tile"] >= 1
    assert got["gather"] == 1
    assert got["adam"] >= 1
    assert got["penalty"] >= 1
    for unused in ("explicit_tile", "parallel", "sgd", "momentum", "reduction"):
        assert got[unused] == 0, (unused, got)


def test_the_parallel_path_is_compiled_when_a_batch_has_several_chunks(tmp_path):
    got = _compiled(tmp_path, 20000, 3, "dict(hidden=16, n_threads=2)")
    assert got["parallel"] == 1
    assert got["reduction"] >= 1
    assert got["gemm_tile"] == 0


_GC_CODE = """
import gc, json, numpy as np, shallownet
from numba.core import dispatcher
collector = []                 # whether the collector was on at each compile
compile_ = dispatcher.Dispatcher.compile
def compile(self, sig):
    collector.append(gc.isenabled())
    return compile_(self, sig)
dispatcher.Dispatcher.compile = compile
rng = np.random.default_rng(0)
X = rng.normal(size=(300, 3)); y = rng.normal(size=300)
w = rng.uniform(0.5, 2.0, size=300)
out = {}
epochs_on = []                 # whether it was on in the callbacks between epochs
for name, fit in (("fit", {"callback": lambda *a: epochs_on.append(gc.isenabled())}),
                  ("lbfgs", {"optimizer": "lbfgs"})):
    shallownet.fit(X, y, backend="numba", epochs=2, random_state=0, sample_weight=w, **fit)
    out[name] = {"compiles": len(collector), "on_during": sum(collector),
                 "on_after": gc.isenabled()}
    collector.clear()
out["epochs_on"] = epochs_on
gc.disable()
shallownet.fit(X, y, backend="numba", epochs=2, random_state=0, activation="relu")
out["user_disabled"] = {"compiles": len(collector), "on_after": gc.isenabled()}
print(json.dumps(out))
"""


def test_kernels_compile_with_the_garbage_collector_paused(tmp_path):
    # backends.numba.compiling: the collector is off while Numba compiles
    # (its collections cost a first fit 3-14%), as it was in the epochs'
    # callbacks and after
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    out = subprocess.run([sys.executable, "-c", _GC_CODE], env=env, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("fit", "lbfgs"):
        assert got[name]["compiles"] >= 2, got       # the entry point and its kernels
        assert got[name]["on_during"] == 0, got
        assert got[name]["on_after"] is True, got
    assert got["epochs_on"] == [True, True], got
    assert got["user_disabled"]["compiles"] >= 1, got
    assert got["user_disabled"]["on_after"] is False, got


_AVX512_CODE = """
import json
from numba import njit, types
from shallownet._numba import explicit, rows

@njit(fastmath={"contract"})
def unmarked(a, x, y):   # a loop of the user's: LLVM's own choice of width
    for i in range(x.shape[0]):
        y[i] += a * x[i]

v1, m2 = types.float64[::1], types.float64[:, ::1]
sigs = {
    "backward_units": (m2, types.int64, types.int64, m2, types.int64, types.int64, m2, m2, m2,
                       v1, m2, v1, m2, types.boolean, types.none),
    "residual": (v1, v1, v1, types.float64),
    "unmarked": (types.float64, v1, v1),
}
funcs = {"backward_units": explicit._backward_units, "residual": rows.residual,
         "unmarked": unmarked}
out = {}
for name, f in funcs.items():
    f.compile(sigs[name])      # compiled, never run: this host may lack AVX-512
    asm = f.inspect_asm(sigs[name])
    out[name] = {"zmm": asm.count("zmm"), "ymm": asm.count("ymm")}
print(json.dumps(out))
"""


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "AMD64"), reason="x86 code generation")
def test_kernels_use_512_bit_vectors_for_an_avx512_cpu(tmp_path):
    # LLVM prefers 256-bit vectors on AVX-512 CPUs; the kernels ask for the
    # full width in their own functions only (intrinsics.wide_vectors). The
    # kernels are compiled for a Skylake-AVX512 target in a child process
    # (never run: this host may lack AVX-512); a loop without the request
    # keeps LLVM's 256-bit choice, so the process-wide settings are untouched.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               NUMBA_CPU_NAME="skylake-avx512",
               NUMBA_CPU_FEATURES="+avx512f,+avx512dq,+avx512bw,+avx512vl,+avx512cd,+avx2,+avx,"
                                  "+fma,+f16c,+bmi,+bmi2,+popcnt,+sse4.2,+sse4.1,+ssse3")
    proc = subprocess.run([sys.executable, "-c", _AVX512_CODE], capture_output=True, text=True,
                          env=env, timeout=HANG_GUARD)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["backward_units"]["zmm"] > 0, counts
    assert counts["residual"]["zmm"] > 0, counts
    assert counts["unmarked"]["zmm"] == 0 and counts["unmarked"]["ymm"] > 0, counts
