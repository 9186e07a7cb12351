"""The installed package works without a compiler and from a read-only directory."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import shallownet

FIT_EVERY_BACKEND = (
    "import numpy as np, shallownet;"
    "X = np.random.default_rng(0).standard_normal((300, 3)); y = X.sum(1);"
    "[shallownet.fit(X, y, epochs=5, backend=b) for b in ('numpy', 'numba', 'cython')];"
    "print('ok')"
)


def test_runs_with_no_compiler_on_path(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path), CC="/bin/false", CXX="/bin/false",
               NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    out = subprocess.run([sys.executable, "-c", FIT_EVERY_BACKEND], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0
                    or shutil.which("unshare") is None,
                    reason="needs root and unshare to mount the package directory read-only")
def test_numba_cache_works_from_a_read_only_package_directory(tmp_path):
    package_dir = Path(shallownet.__file__).parent
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    script = (f"mount --bind -o ro '{package_dir}' '{package_dir}' && "
              f"'{sys.executable}' -c \"{FIT_EVERY_BACKEND}\"")
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env,
                         capture_output=True, text=True, timeout=600)
    if "mount" in out.stderr and out.returncode != 0 and "ok" not in out.stdout:
        pytest.skip(f"read-only bind mount not permitted here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    # the kernels were cached somewhere writable, outside the package
    assert any(home.rglob("*.nbi")), "numba wrote no cache index under the user cache directory"


def test_package_is_marked_typed():
    # PEP 561: type checkers read the installed package's hints only with this marker
    assert (Path(shallownet.__file__).parent / "py.typed").is_file()
