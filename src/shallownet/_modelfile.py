"""Reading a model file defensively: a file is untrusted input.

``Model.save`` writes an ``.npz`` (a zip of ``.npy`` members, no pickles).
``read`` opens only the members it knows, reads each ``.npy`` header before
any data, and refuses a member whose header or declared size disagrees
with what the model needs, before decompressing it: an unknown member, a
decompression bomb, a wrong dtype or shape, or deeply nested metadata cost
nothing but a ValueError.
"""

import json
import zipfile

import numpy as np

from ._params import Params

# the metadata is a few hundred bytes of JSON; anything near this is not ours
_META_MAX_BYTES = 1 << 20
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class FileError(ValueError):
    """A model file that cannot be read, with the reason."""


def _member(zf, name, dtype_ok, shape_ok, what):
    """The array in member ``name``.npy, checked header first."""
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise FileError(f"member {name!r} is missing") from None
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise FileError(f"member {name!r} has .npy version {version}")
        except (ValueError, EOFError) as exc:
            raise FileError(f"member {name!r} has no valid .npy header: {exc}") from None
        if dtype.hasobject or not dtype_ok(dtype):
            raise FileError(f"member {name!r} has dtype {dtype}, expected {what}")
        if not shape_ok(shape):
            raise FileError(f"member {name!r} has shape {shape}, expected {what}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if info.file_size != f.tell() + nbytes:
            raise FileError(f"member {name!r} declares {info.file_size} bytes, its header "
                            f"{f.tell() + nbytes}")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise FileError(f"member {name!r} is truncated")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return np.array(array, order="C")   # writable, owned, native layout


def _meta(zf):
    meta = _member(zf, "meta", lambda t: t.kind == "U" and t.itemsize <= _META_MAX_BYTES,
                   lambda s: s == (), f"a JSON string under {_META_MAX_BYTES} bytes")
    try:
        meta = json.loads(str(meta))
    except (ValueError, RecursionError) as exc:
        raise FileError(f"its metadata is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(meta, dict) or "format" not in meta:
        raise FileError("its metadata is not a shallownet model's")
    return meta


_KNOWN = ["meta", "step", "loss_curve", "validation_curve"] + [
    f"{prefix}_{field}" for prefix in ("param", "m", "v") for field in Params._fields]


def read(path, format_version, max_bytes):
    """``(meta, arrays)`` of a model file; raises FileError saying what is wrong.

    ``arrays`` is None when the file's format is not ``format_version``.
    The members read may declare ``max_bytes`` in all, at most.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist()
                           if info.filename[:-4] in _KNOWN and info.filename.endswith(".npy"))
            if declared > max_bytes:
                raise FileError(f"its members declare {declared} bytes, over max_bytes={max_bytes}")
            meta = _meta(zf)
            if meta["format"] != format_version:
                return meta, None
            arrays = {}
            W1 = _member(zf, "param_W1", lambda t: t in _FLOATS,
                         lambda s: len(s) == 2 and s[0] >= 1 and s[1] >= 1,
                         "float32 or float64 of shape (d, h), d, h >= 1")
            d, h = W1.shape
            dtype = W1.dtype
            W2_header = _member(zf, "param_b2", lambda t: t == dtype,
                                lambda s: len(s) == 1 and s[0] >= 1, f"{dtype} of shape (k,)")
            k = W2_header.shape[0]
            shapes = dict(W1=(d, h), b1=(h,), W2=(h, k), b2=(k,))
            for prefix in ("param", "m", "v"):
                for field in Params._fields:
                    name = f"{prefix}_{field}"
                    shape = shapes[field]
                    arrays[name] = _member(zf, name, lambda t: t == dtype,
                                           lambda s, shape=shape: s == shape, f"{dtype} {shape}")
            arrays["step"] = _member(zf, "step", lambda t: t.kind in "iu",
                                     lambda s: s in ((), (1,)), "an integer step count")
            epochs = meta.get("epochs_done")
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
                raise FileError(f"its metadata has epochs_done={epochs!r}")
            for name in ("loss_curve", "validation_curve"):
                arrays[name] = _member(zf, name, lambda t: t in _FLOATS,
                                       lambda s: len(s) == 1 and s[0] <= epochs,
                                       f"a float curve of at most {epochs} epochs")
            return meta, arrays
    except FileError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, KeyError,
            ValueError, TypeError, OverflowError, RecursionError, NotImplementedError) as exc:
        raise FileError(f"{type(exc).__name__}: {exc}") from None
