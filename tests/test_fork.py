"""A child made by fork after the parent fitted can fit, with either compiled backend.

Each combination runs in its own interpreter: a hang or an abort there is a
failed test here, not a stuck suite.
"""

import subprocess
import sys
import textwrap

import pytest

from conftest import COMPILED_BACKENDS

HANG_GUARD_SECONDS = 300

SCRIPT = """
import multiprocessing, sys
import numpy as np
import shallownet

def fit(backend):
    X = np.random.default_rng(1).standard_normal((20000, 20))
    y = np.sin(X).sum(axis=1)
    # full batch, two threads, large enough to run the chunks in parallel
    model = shallownet.fit(X, y, hidden=32, epochs=3, backend=backend, n_threads=2,
                           random_state=0)
    return model.loss_curve[-1]

def child(backend, queue):
    queue.put(fit(backend))

if __name__ == "__main__":
    parent, child_backend = sys.argv[1], sys.argv[2]
    expected = fit(parent)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(child_backend, queue))
    proc.start()
    proc.join({guard})
    if proc.is_alive():
        proc.kill()
        sys.exit("the child hung")
    if proc.exitcode != 0:
        sys.exit(f"the child died with exit code {{proc.exitcode}}")
    got = queue.get(timeout=10)
    # the child's fit is the parent's computation: the same result, bitwise
    assert got == fit(child_backend), (got, expected)
    print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method")
@pytest.mark.parametrize("child", COMPILED_BACKENDS)
@pytest.mark.parametrize("parent", COMPILED_BACKENDS)
def test_fork_started_child_can_fit(parent, child, tmp_path):
    script = tmp_path / "fork_fit.py"
    script.write_text(textwrap.dedent(SCRIPT.format(guard=HANG_GUARD_SECONDS - 60)))
    proc = subprocess.run([sys.executable, str(script), parent, child], capture_output=True,
                          text=True, timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (
        f"parent {parent}, child {child}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
