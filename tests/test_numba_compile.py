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
    return len(f.dispatcher.signatures)
print(json.dumps({{
    "explicit_tile": count(explicit._forward_unit),
    "gemm_tile": count(gemm._tile),
    "gemm_k1_from_a": count(gemm._backward_units_k1_from_a),
    "gemm_k1": count(gemm._backward_units_k1),
    "gemm_multi": count(gemm._backward_units),
    "parallel": count(batch._chunks_prange),
    "gather": count(rows.gather),
    "adam": count(steps._step_adam),
    "momentum": count(steps._step_momentum),
    "sgd": count(steps._step_sgd),
    "penalty": count(rows.sum_squares) + count(rows.add_scaled),
    "reduction": count(rows.sum_chunks),
    "tile_flags": [[str(t) for t in sig[-3:]]
                   for sig in explicit._forward_unit.dispatcher.signatures],
}}))
"""


def _child(code, cache, *args, **env):
    """Run code in a fresh interpreter with the Numba cache ``cache``; its
    last line of output, read as JSON."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), **env)
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _compiled(tmp_path, n, d, fit):
    return _child(textwrap.dedent(_REPORT.format(n=n, d=d, fit=fit)), tmp_path / "numba-cache")


def test_a_default_fit_compiles_only_its_own_path(tmp_path):
    # (1000, 3) with 16 hidden units: explicit loops, batches of one chunk
    # (no reduction of chunks), plain gradient descent, no penalty
    got = _compiled(tmp_path, 1000, 3, "dict(hidden=16, n_threads=1)")
    assert got["explicit_tile"] == 1
    # d > 1, k = 1 and d < 4 reach the tile as constants, True, None and
    # None: a plain bool from the tiles' record would compile the loops of
    # both cases, and the passes over several features at once are not
    # compiled for three features
    assert got["tile_flags"] == [["Literal[bool](True)", "none", "none"]]
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
    # float64, k = 1: g' from a1; neither the float32 form nor k > 1's
    assert got["gemm_k1_from_a"] >= 1
    assert got["gemm_k1"] == got["gemm_multi"] == 0, got
    assert got["gather"] == 1
    assert got["adam"] >= 1
    assert got["penalty"] >= 1
    for unused in ("explicit_tile", "parallel", "sgd", "momentum", "reduction"):
        assert got[unused] == 0, (unused, got)


def test_the_parallel_path_is_compiled_when_a_batch_has_several_chunks(tmp_path):
    got = _compiled(tmp_path, 20000, 4, "dict(hidden=16, n_threads=2)")
    assert got["parallel"] == 1
    # four features: the passes over several features at once are compiled
    assert got["tile_flags"] == [["Literal[bool](True)", "none", "Literal[bool](True)"]]
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
    got = _child(_GC_CODE, tmp_path / "numba-cache")
    assert got["fit"]["compiles"] >= 2, got          # the entry point and its kernels
    # the evaluation compiles its entry point only: the batch below it is the fit's
    assert got["lbfgs"]["compiles"] >= 1, got
    for name in ("fit", "lbfgs"):
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
    "backward_units": (m2, types.int64, types.int64, m2, m2, m2, m2, v1, m2, v1, m2,
                       types.literal(True), types.none, types.literal(True)),
    "residual": (v1, v1, v1, types.float64),
    "unmarked": (types.float64, v1, v1),
}
funcs = {"backward_units": explicit._backward_units.dispatcher,
         "residual": rows.residual.dispatcher, "unmarked": unmarked}
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
    counts = _child(_AVX512_CODE, tmp_path / "numba-cache", NUMBA_CPU_NAME="skylake-avx512",
                    NUMBA_CPU_FEATURES="+avx512f,+avx512dq,+avx512bw,+avx512vl,+avx512cd,+avx2,"
                                       "+avx,+fma,+f16c,+bmi,+bmi2,+popcnt,+sse4.2,+sse4.1,+ssse3")
    assert counts["backward_units"]["zmm"] > 0, counts
    assert counts["residual"]["zmm"] > 0, counts
    assert counts["unmarked"]["zmm"] == 0 and counts["unmarked"]["ymm"] > 0, counts


def test_every_kernel_is_found_again_by_its_home():
    # a cached caller loads its callees by (module, name) before it loads
    # itself (calls._Callee): each kernel must be that module's attribute
    import importlib

    import shallownet._numba as package

    kernels = []
    for module_name in ("activations", "batch", "epochs", "explicit", "gemm", "rows", "steps"):
        module = importlib.import_module(f"{package.__name__}.{module_name}")
        kernels += [obj for obj in vars(module).values() if hasattr(obj, "home")]
    assert len({id(k) for k in kernels}) >= 15
    for k in kernels:
        module, name = k.home
        assert getattr(importlib.import_module(module), name) is k, k.home
        assert k.dispatcher.py_func.__module__ == module


_FIRST_FIT_CODE = """
import gc, json, numpy as np, shallownet
from numba.core.registry import CPUDispatcher
rng = np.random.default_rng(0)
X = rng.normal(size=(1000, 3)); y = rng.normal(size=1000)
shallownet.fit(X, y, backend="numba", epochs=2, random_state=0, hidden=16, n_threads=1)
out = {}
for f in gc.get_objects():
    if isinstance(f, CPUDispatcher) and f.py_func.__name__ in ("train", "chunk"):
        (cres,) = f.overloads.values()
        lines = cres.library.get_llvm_str().splitlines()
        report = {what: sum(1 for l in lines if l.startswith(what) and "_forward_unit" in l)
                  for what in ("define", "declare")}
        report["passes"] = [p for passes in cres.metadata["pipeline_times"].values()
                            for p in passes]
        if f.py_func.__name__ == "train":
            # the LLVM attributes of the entry's Python wrapper and of its own code
            for part, name in (("wrapper", cres.fndesc.llvm_cpython_wrapper_name),
                               ("own", cres.fndesc.llvm_func_name)):
                function = cres.library.get_function(name)
                report[part] = sorted({w.decode() for a in function.attributes
                                       for w in bytes(a).split()})
        out[f.py_func.__name__] = report
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def first_fit(tmp_path_factory):
    """What the epoch loop and the chunk of a default fit's first compile
    hold, from a fresh interpreter with an empty cache."""
    return _child(_FIRST_FIT_CODE, tmp_path_factory.mktemp("numba-cache"))


def test_callers_call_the_tiles_without_a_copy_of_their_code(first_fit):
    # calls.kernel: the chunk declares the forward tile and calls it by
    # symbol, where Numba would have linked and compiled its code once more
    chunk, train = first_fit["chunk"], first_fit["train"]
    assert (chunk["define"], chunk["declare"]) == (0, 1), first_fit
    assert (train["define"], train["declare"]) == (0, 0), first_fit


def test_kernels_compile_without_the_after_inference_rewrites(first_fit):
    # jit.KernelCompiler and EntryCompiler: Numba's nopython pipeline less
    # its after-inference rewrites, which cannot apply to a kernel that
    # allocates nothing; its other passes still run
    for name, report in first_fit.items():
        passes = report["passes"]
        assert not any(p.endswith("_nopython_rewrites") for p in passes), (name, passes)
        assert any(p.endswith("_nopython_type_inference") for p in passes), (name, passes)
        assert any(p.endswith("_dead_branch_prune") for p in passes), (name, passes)


def test_an_entry_points_python_wrapper_is_compiled_unoptimized(first_fit):
    # jit.EntryCompiler: the wrapper that unboxes the arguments is optnone,
    # the entry point's own code is optimized as every kernel is
    train = first_fit["train"]
    assert {"optnone", "noinline"} <= set(train["wrapper"]), train
    assert "optnone" not in train["own"], train


_CACHED_CODE = """
import hashlib, json, sys, numpy as np
from numba import njit
# compile other functions first: Numba numbers a process's compiled functions,
# so a kernel compiled again here gets another symbol than its cached callers call
for i in range(int(sys.argv[1])):
    njit(lambda x: x + 1)(i)
import shallownet
from shallownet._numba import calls
rng = np.random.default_rng(0)
X = rng.normal(size=(1000, 3)); y = rng.normal(size=1000)
m = shallownet.fit(X, y, backend="numba", epochs=3, random_state=0, hidden=16, n_threads=1)
digest = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in m.params))
print(json.dumps({"hash": digest.hexdigest(), "forwarders": len(calls._forwarders)}))
"""


def test_a_cached_fit_loads_its_kernels_even_when_one_was_compiled_again(tmp_path):
    # calls._Callee: a cached caller first loads its callees; a callee whose
    # cache entry is gone compiles again under another symbol, and a
    # forwarder gives it the name the cached caller calls
    cache = tmp_path / "numba-cache"
    first = _child(_CACHED_CODE, cache, "0")
    cached = _child(_CACHED_CODE, cache, "0")
    assert cached == {"hash": first["hash"], "forwarders": 0}
    removed = [p for p in cache.rglob("*") if p.is_file() and "_forward_unit" in p.name]
    assert removed
    for p in removed:
        p.unlink()
    again = _child(_CACHED_CODE, cache, "50")
    assert again["hash"] == first["hash"]
    assert again["forwarders"] >= 1, again
