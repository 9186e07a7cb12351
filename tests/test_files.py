"""Model files are untrusted input: every malformed file is a ValueError naming what is wrong."""

import io
import json
import zipfile

import numpy as np
import pytest

import shallownet
from conftest import make_problem


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    X, y = make_problem(30, 3, 1)
    model = shallownet.fit(X, y, hidden=4, epochs=3, optimizer="adam", backend="numpy",
                           random_state=0)
    path = tmp_path_factory.mktemp("files") / "good.npz"
    model.save(path)
    with np.load(path) as f:
        members = dict(f)
    return path, members, X


def _write(path, members, extra=()):
    buf = io.BytesIO()
    np.savez(buf, **members)
    with open(path, "wb") as out:
        out.write(buf.getvalue())
    if extra:
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in extra:
                zf.writestr(name, data)
    return path


def _meta(members, **changes):
    meta = json.loads(str(members["meta"]))
    meta.update(changes)
    return dict(members, meta=np.array(json.dumps(meta)))


def test_good_file_loads(saved):
    path, _, X = saved
    assert shallownet.load(path).predict(X).shape == (30,)


@pytest.mark.parametrize("content, match", [
    (b"", "not a readable"),
    (b"PK\x03\x04garbage", "not a readable"),
    (b"\x93NUMPY" + b"\x00" * 40, "not a readable"),
])
def test_empty_and_garbage_files(tmp_path, content, match):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        shallownet.load(path)


def test_truncated_file(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable shallownet model file"):
            shallownet.load(bad)


def test_unknown_members_are_not_read(saved, tmp_path):
    # 64 MiB of zeros in a member no model has: load must not decompress it
    _, members, X = saved
    bomb = _write(tmp_path / "extra.npz", members,
                  extra=[("junk.npy", b"\x00" * (64 << 20))])
    import tracemalloc
    tracemalloc.start()
    model = shallownet.load(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < (8 << 20)
    assert model.predict(X).shape == (30,)


def test_oversized_members_refused_before_reading(saved, tmp_path):
    _, members, _ = saved
    big = dict(members, loss_curve=np.zeros(1 << 20))   # more epochs than were run
    with pytest.raises(ValueError, match="member 'loss_curve' has shape"):
        shallownet.load(_write(tmp_path / "curve.npz", big))
    with pytest.raises(ValueError, match="over max_bytes=1000"):
        shallownet.load(_write(tmp_path / "ok.npz", members), max_bytes=1000)


def test_nested_and_overflowing_metadata(saved, tmp_path):
    _, members, _ = saved
    nested = dict(members, meta=np.array("[" * 100000 + "]" * 100000))
    with pytest.raises(ValueError, match="not a readable.*(JSON|metadata)"):
        shallownet.load(_write(tmp_path / "nested.npz", nested))
    meta = json.loads(str(members["meta"]))
    state = meta["shuffle_state"]
    state["state"]["state"] = 10 ** 400
    with pytest.raises(ValueError, match="damaged shallownet model file"):
        shallownet.load(_write(tmp_path / "huge.npz", _meta(members, shuffle_state=state)))
    for key, value in (("epochs_done", -1), ("epochs_done", 1.5), ("one_d_y", "yes"),
                       ("options", [1, 2]), ("n_threads", 0)):
        with pytest.raises(ValueError, match="shallownet model file"):
            shallownet.load(_write(tmp_path / f"{key}.npz", _meta(members, **{key: value})))
    with pytest.raises(ValueError, match="not a readable"):
        shallownet.load(_write(tmp_path / "list.npz", dict(members, meta=np.array("[1]"))))


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128, object])
def test_wrong_parameter_dtype(saved, tmp_path, dtype):
    _, members, _ = saved
    bad = dict(members)
    for prefix in ("param", "m", "v"):
        for field in ("W1", "b1", "W2", "b2"):
            bad[f"{prefix}_{field}"] = members[f"{prefix}_{field}"].astype(dtype)
    path = tmp_path / "dtype.npz"
    buf = io.BytesIO()
    np.savez(buf, **bad)   # object arrays are pickled: refused without unpickling
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="member 'param_W1' has dtype"):
        shallownet.load(path)


def test_zero_hidden_units_and_shape_mismatch(saved, tmp_path):
    _, members, _ = saved
    zero = dict(members)
    d = members["param_W1"].shape[0]
    for prefix in ("param", "m", "v"):
        zero[f"{prefix}_W1"] = np.zeros((d, 0))
        zero[f"{prefix}_b1"] = np.zeros(0)
        zero[f"{prefix}_W2"] = np.zeros((0, 1))
    with pytest.raises(ValueError, match="param_W1"):
        shallownet.load(_write(tmp_path / "zero.npz", zero))
    wrong = dict(members, v_b1=np.zeros(7))
    with pytest.raises(ValueError, match="member 'v_b1' has shape"):
        shallownet.load(_write(tmp_path / "vb1.npz", wrong))
    with pytest.raises(ValueError, match="member 'm_W2' is missing"):
        shallownet.load(_write(tmp_path / "missing.npz",
                               {k: val for k, val in members.items() if k != "m_W2"}))
