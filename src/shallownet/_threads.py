"""Threads: how many a fit may use, and BLAS's thread count during a fit.

Bottom level (imports nothing of shallownet's). Two rules:

- The default thread count respects the limits the process was given: CPU
  affinity, a cgroup CPU quota, ``OMP_NUM_THREADS`` (which joblib's workers
  and many schedulers set) and BLAS limits set with threadpoolctl or
  ``OPENBLAS_NUM_THREADS``.
- BLAS's thread count is process-wide, and fits may run in several Python
  threads at once. ``blas_limit`` keeps one table of the limits wanted by
  the fits in progress: BLAS runs at the smallest of them, and when the last
  fit ends every library gets back the count it had before the first began,
  whatever order the fits end in. threadpoolctl scans the loaded libraries
  once per process (~0.7 ms a scan, ``docs/kernels.md``), not at every call.
"""

import contextlib
import os
import threading

_lock = threading.Lock()
_libraries = None       # threadpoolctl's controllers of the loaded BLAS libraries (rescan())
_wanted = {}            # token -> BLAS threads wanted by a fit in progress
_before = []            # (library controller, its thread count before the first fit began)
_cgroup_cores = None    # the cgroup quota in cores, read once
_env_parsed = (None, None)  # (OMP_NUM_THREADS, its thread count) last read


def _read_cgroup_cores():
    """CPU quota / period of this process's cgroup (v2, then v1), or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, int(int(quota) // int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return max(1, quota // period) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _env_threads():
    """The first entry of OMP_NUM_THREADS ("4" or "4,2"), when it is a positive
    integer; the last value seen is parsed once (every small call asks)."""
    global _env_parsed
    raw = os.environ.get("OMP_NUM_THREADS", "")
    if _env_parsed[0] != raw:
        value = raw.split(",")[0].strip()
        _env_parsed = (raw, int(value) if value.isdigit() and int(value) > 0 else None)
    return _env_parsed[1]


def _blas_libraries():
    global _libraries
    if _libraries is None:
        from threadpoolctl import ThreadpoolController
        _libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    return _libraries


def rescan():
    """Forget the scan of loaded libraries (a backend that loads a BLAS calls this)."""
    global _libraries
    with _lock:
        if not _wanted:
            _libraries = None


def usable_cores():
    """The threads a fit uses by default: every core this process may use,
    within its affinity, cgroup quota, ``OMP_NUM_THREADS`` and BLAS limits."""
    global _cgroup_cores
    if hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    if _cgroup_cores is None:
        _cgroup_cores = _read_cgroup_cores() or 0
    n = min(n, _cgroup_cores or n, _env_threads() or n)
    with _lock:
        # a BLAS limited below the cores by the user (threadpoolctl, or an
        # environment variable) is a limit on this process's threads too;
        # while fits run, the counts the libraries had before them
        counts = ([count for _, count in _before] if _wanted
                  else [lib.get_num_threads() for lib in _blas_libraries()])
    for count in counts:
        if count and 0 < count < n:
            n = count
    return max(1, n)


@contextlib.contextmanager
def blas_limit(threads):
    """BLAS on at most ``threads`` threads for the ``with`` body (see the module doc)."""
    token = object()
    with _lock:
        libraries = _blas_libraries()
        if not _wanted:
            _before[:] = [(lib, lib.num_threads) for lib in libraries]
        _wanted[token] = threads
        _apply(min(_wanted.values()))
    try:
        yield
    finally:
        with _lock:
            del _wanted[token]
            if _wanted:
                _apply(min(_wanted.values()))
            else:
                for lib, count in _before:
                    if lib.num_threads != count:
                        _set(lib, count)
                _before.clear()


def _apply(threads):
    for lib, count in _before:
        want = min(threads, count)
        if lib.num_threads != want:
            _set(lib, want)


def _set(lib, threads):
    # threadpoolctl >= 3.8 lets only one Python thread (the first to set an
    # OpenBLAS pthreads limit) change it and silently drops the others' calls;
    # a fit in another thread could then not restore the count. _lock already
    # orders every change made here, so set the library's count directly.
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(threads)
