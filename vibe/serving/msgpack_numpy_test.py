"""The codec's bytes are openpi-client's: pinned messages, round trips, refusals, read-only results."""

import msgpack
import numpy as np
import pytest

from vibe.serving import msgpack_numpy

# The map every array header starts with: fixmap(4), bin8(11) b"__ndarray__", true, bin8(4) b"data".
_ND = "84c40b5f5f6e6461727261795f5fc3c40464617461"

# np.array([1, 0], dtype) packed: data, then bin b"dtype", str dtype.str, bin b"shape", [2].
PINNED = [
    ("bool", _ND + "c4020100c4056474797065a37c6231c40573686170659102"),
    ("int8", _ND + "c4020100c4056474797065a37c6931c40573686170659102"),
    ("int16", _ND + "c40401000000c4056474797065a33c6932c40573686170659102"),
    ("int32", _ND + "c4080100000000000000c4056474797065a33c6934c40573686170659102"),
    ("int64", _ND + "c41001000000000000000000000000000000c4056474797065a33c6938c40573686170659102"),
    ("uint8", _ND + "c4020100c4056474797065a37c7531c40573686170659102"),
    ("uint16", _ND + "c40401000000c4056474797065a33c7532c40573686170659102"),
    ("uint32", _ND + "c4080100000000000000c4056474797065a33c7534c40573686170659102"),
    ("uint64", _ND + "c41001000000000000000000000000000000c4056474797065a33c7538c40573686170659102"),
    ("float16", _ND + "c404003c0000c4056474797065a33c6632c40573686170659102"),
    ("float32", _ND + "c4080000803f00000000c4056474797065a33c6634c40573686170659102"),
    ("float64", _ND + "c410000000000000f03f0000000000000000c4056474797065a33c6638c40573686170659102"),
]


@pytest.mark.parametrize(("dtype", "hex_bytes"), PINNED)
def test_array_bytes_are_pinned(dtype, hex_bytes):
    arr = np.array([1, 0], dtype=dtype)
    assert msgpack_numpy.packb(arr).hex() == hex_bytes
    # The same bytes as the documented map packed by plain msgpack.
    spec = {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": (2,)}
    assert msgpack.packb(spec) == bytes.fromhex(hex_bytes)


def test_other_pinned_messages():
    cases = [
        # 0-d float32 array: shape is the empty msgpack array (0x90).
        (np.array(1.5, np.float32), _ND + "c4040000c03fc4056474797065a33c6634c405736861706590"),
        # Empty (2, 0, 3) array: zero data bytes, shape [2, 0, 3].
        (np.zeros((2, 0, 3), np.float32), _ND + "c400c4056474797065a33c6634c405736861706593020003"),
        # Unicode and bytes arrays: dtype.str "<U2" / "|S2".
        (np.array(["ab", "c"]), _ND + "c41061000000620000006300000000000000c4056474797065a33c5532c40573686170659102"),
        (np.array([b"ab", b"c"]), _ND + "c40461626300c4056474797065a37c5332c40573686170659102"),
        # A strided view is sent in C order.
        (
            np.array([[1, 2, 3], [4, 5, 6]], np.int16)[:, ::2],
            _ND + "c4080100030004000600c4056474797065a33c6932c4057368617065920202",
        ),
        # Numpy scalars: fixmap(3) b"__npgeneric__", data = item(), dtype.str.
        (np.float32(1.5), "83c40d5f5f6e7067656e657269635f5fc3c40464617461cb3ff8000000000000c4056474797065a33c6634"),
        (np.bool_(True), "83c40d5f5f6e7067656e657269635f5fc3c40464617461c3c4056474797065a37c6231"),
        (np.int64(-2), "83c40d5f5f6e7067656e657269635f5fc3c40464617461fec4056474797065a33c6938"),
        (np.uint8(7), "83c40d5f5f6e7067656e657269635f5fc3c4046461746107c4056474797065a37c7531"),
        # float64 and str_ subclass Python's float and str, so msgpack packs them natively (as openpi-client does).
        (np.float64(0.5), "cb3fe0000000000000"),
        (np.str_("ab"), "a26162"),
    ]
    for value, hex_bytes in cases:
        assert msgpack_numpy.packb(value).hex() == hex_bytes, value


def test_nested_dict_bytes_are_pinned():
    message = {"obs": {"state": np.array([1.0], np.float32), "t": np.int32(4)}, "prompt": "hi"}
    expected = (
        "82a36f627382a57374617465"
        + _ND
        + "c4040000803fc4056474797065a33c6634c40573686170659101"
        + "a17483c40d5f5f6e7067656e657269635f5fc3c4046461746104c4056474797065a33c6934"
        + "a670726f6d7074a26869"
    )
    assert msgpack_numpy.packb(message).hex() == expected
    assert msgpack_numpy.Packer().pack(message).hex() == expected


@pytest.mark.parametrize(
    "value",
    [
        np.array(1.0),
        np.array([1, 2, 3], dtype=np.int32),
        np.array(["asdf", "qwer"]),
        np.array([True, False]),
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.array([np.nan, np.inf, -np.inf]),
        np.zeros((64, 64, 3), np.uint8),
    ],
)
def test_arrays_round_trip_read_only(value):
    out = msgpack_numpy.unpackb(msgpack_numpy.packb(value))
    assert out.shape == value.shape and out.dtype == value.dtype
    np.testing.assert_array_equal(out, value)
    assert not out.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        out[...] = out


def test_scalars_and_containers_round_trip():
    message = {
        "i": 1,
        "f": 1.0,
        "s": "hello",
        "b": np.bool_(True),
        "n": np.array([1, 2, 3])[0],
        "h": np.float16(2.5),
        "l": [np.array([1, 2]), {"x": np.uint16(9)}],
    }
    out = msgpack_numpy.unpackb(msgpack_numpy.packb(message))
    assert out["i"] == 1 and out["f"] == 1.0 and out["s"] == "hello"
    assert type(out["b"]) is np.bool_ and out["b"]
    assert type(out["n"]) is np.int64 and out["n"] == 1
    assert type(out["h"]) is np.float16 and out["h"] == 2.5
    np.testing.assert_array_equal(out["l"][0], [1, 2])
    assert type(out["l"][1]["x"]) is np.uint16 and out["l"][1]["x"] == 9


@pytest.mark.parametrize(
    "value",
    [
        np.array([1 + 2j]),
        np.complex64(1j),
        np.array([object()], dtype=object),
        np.zeros(2, dtype=[("a", "<i4")]),
    ],
)
def test_unsupported_dtypes_are_refused(value):
    with pytest.raises(ValueError, match="Unsupported dtype"):
        msgpack_numpy.packb(value)


@pytest.mark.parametrize("dtype", ["|O", "<c8", "|V4"])
def test_unsupported_dtypes_from_the_wire_are_refused(dtype):
    message = msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": dtype, b"shape": (1,)})
    with pytest.raises(ValueError, match="Unsupported dtype"):
        msgpack_numpy.unpackb(message)


def test_inconsistent_header_raises_without_allocating():
    # A shape far larger than the data: numpy refuses (buffer too small) instead of allocating.
    message = msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 4, b"dtype": "<f4", b"shape": (10**9, 10**9)})
    with pytest.raises((TypeError, ValueError)):
        msgpack_numpy.unpackb(message)
