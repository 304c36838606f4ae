"""msgpack with numpy arrays, byte for byte the encoding of openpi-client's ``msgpack_numpy``.

An ``np.ndarray`` travels as the map::

    {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}

and a numpy scalar (``np.float32(1)``, ``np.bool_(True)``) as::

    {b"__npgeneric__": True, b"data": scalar.item(), b"dtype": scalar.dtype.str}

Keys are bytes (msgpack bin), ``dtype`` is numpy's ``dtype.str`` (``"<f4"``,
``"|u1"``, ``"<U4"``), ``data`` is C-order bytes, ``shape`` a msgpack array
(``()`` for a 0-d array). Object (``O``), void/structured (``V``) and complex
(``c``) dtypes are refused with ``ValueError("Unsupported dtype: ...")`` on
packing, as openpi-client does, and on unpacking too (openpi-client would
build them from the buffer; an object dtype from the network must never reach
``np.ndarray``).

Unpacked arrays are zero-copy views of the received message and therefore
**read-only** (``arr.flags.writeable`` is False), as in openpi-client. Call
``np.array(x)`` (a copy) before writing into one.
"""

import functools
from typing import Any

import msgpack
import numpy as np

# dtype kinds that have no portable byte representation (or would unpickle / alias memory).
_UNSUPPORTED_KINDS = ("V", "O", "c")


def pack_array(obj: Any) -> Any:
    """msgpack ``default`` hook: numpy arrays and scalars → the maps above; anything else unchanged."""
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in _UNSUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _dtype(name: Any) -> np.dtype:
    dtype = np.dtype(name)
    if dtype.kind in _UNSUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype: {dtype}")
    return dtype


def unpack_array(obj: dict) -> Any:
    """msgpack ``object_hook``: the maps above → read-only arrays / numpy scalars; other maps unchanged."""
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=_dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return _dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


Packer = functools.partial(msgpack.Packer, default=pack_array)
packb = functools.partial(msgpack.packb, default=pack_array)

Unpacker = functools.partial(msgpack.Unpacker, object_hook=unpack_array)
unpackb = functools.partial(msgpack.unpackb, object_hook=unpack_array)
