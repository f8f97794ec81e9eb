"""DlibReader, the primitive reader of dlib's serialisation format, on hand-built bytes.

Every expected value is written out by hand from dlib's encoding (``dlib/serialize.h``):
an integer is a header byte (low 4 bits: byte count; 0x80: negative) and the magnitude's bytes,
little-endian; a float is a packed mantissa and a packed exponent (m * 2**e); a string is a packed
length and its bytes; a tensor is version 2, four packed dims and float32 values. A few byte
strings are taken from dlib itself (its pickles serialise with the same code) as a cross-check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from leam.models._dlib_format import DlibFormatError, DlibReader


def read_ints(data: bytes) -> list[int]:
    rd = DlibReader(data)
    out = []
    while not rd.at_end():
        out.append(rd.int())
    return out


# --------------------------------------------------------------------------------------------- ints


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x01\x00", 0),  # dlib writes 0 as one zero byte
        (b"\x00", 0),  # a header with no bytes also reads as 0
        (b"\x01\x05", 5),
        (b"\x81\x05", -5),
        (b"\x01\xff", 255),
        (b"\x02\x00\x01", 256),
        (b"\x02\x2c\x01", 300),  # 0x012c
        (b"\x81\x81", -129),
        (b"\x03\x70\x11\x01", 70000),  # 0x011170
        (b"\x04\xff\xff\xff\x7f", 2**31 - 1),
        (b"\x84\x00\x00\x00\x80", -(2**31)),
        (b"\x08" + b"\xff" * 8, 2**64 - 1),
        (b"\x88\x00\x00\x00\x00\x00\x00\x00\x80", -(2**63)),
    ],
)
def test_int_literals(data, expected):
    rd = DlibReader(data)
    assert rd.int() == expected
    assert rd.at_end()


def test_ints_in_sequence_advance_the_cursor():
    rd = DlibReader(b"\x01\x02\x81\x03\x02\x2c\x01")
    assert (rd.int(), rd.pos) == (2, 2)
    assert (rd.int(), rd.pos) == (-3, 4)
    assert (rd.int(), rd.pos) == (300, 7)
    assert rd.at_end()


def test_ints_match_dlib_own_serialisation():
    # pickle.dumps(dlib.rectangle(-5, 300, 70000, -1)) and dlib.point(-129, 2**31 - 1) hold these bytes
    assert read_ints(b"\x81\x05\x02\x2c\x01\x03\x70\x11\x01\x81\x01") == [-5, 300, 70000, -1]
    assert read_ints(b"\x81\x81\x04\xff\xff\xff\x7f") == [-129, 2**31 - 1]


def test_ints_match_dlib_pickles_when_dlib_is_installed():
    dlib = pytest.importorskip("dlib")
    (state,) = dlib.rectangle(-5, 300, 70000, -1).__getstate__()
    assert read_ints(state) == [-5, 300, 70000, -1]
    (state,) = dlib.point(-129, 2**31 - 1).__getstate__()
    assert read_ints(state) == [-129, 2**31 - 1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x09" + b"\x00" * 9, "bad integer header 0x09 at byte 0"),  # more than 8 bytes
        (b"\x11\x00", "bad integer header 0x11 at byte 0"),  # a reserved bit set
        (b"\x41\x00", "bad integer header 0x41 at byte 0"),
    ],
)
def test_int_bad_header(data, message):
    with pytest.raises(DlibFormatError, match=message):
        DlibReader(data).int()


def test_int_bad_header_reports_its_offset():
    rd = DlibReader(b"\x01\x07\x1f")
    assert rd.int() == 7
    with pytest.raises(DlibFormatError, match="bad integer header 0x1f at byte 2"):
        rd.int()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unexpected end of data at byte 0: wanted 1 bytes, 0 left"),
        (b"\x04\xff\xff", "unexpected end of data at byte 1: wanted 4 bytes, 2 left"),
        (b"\x88\x00", "unexpected end of data at byte 1: wanted 8 bytes, 1 left"),
    ],
)
def test_int_truncated(data, message):
    with pytest.raises(DlibFormatError, match=message):
        DlibReader(data).int()


# -------------------------------------------------------------------------------------------- bools


def test_bools():
    rd = DlibReader(b"10")
    assert rd.bool() is True
    assert rd.bool() is False
    assert rd.at_end()


@pytest.mark.parametrize(("byte", "shown"), [(b"\x01", "0x01"), (b"\x00", "0x00"), (b"t", "0x74")])
def test_bad_bool(byte, shown):
    rd = DlibReader(b"1" + byte)
    rd.bool()
    with pytest.raises(DlibFormatError, match=f"bad bool byte {shown} at byte 1"):
        rd.bool()


def test_bool_truncated():
    with pytest.raises(DlibFormatError, match="unexpected end of data at byte 0"):
        DlibReader(b"").bool()


# ------------------------------------------------------------------------------------------- floats


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x01\x18\x81\x04", 1.5),  # 24 * 2**-4
        (b"\x81\x10\x81\x03", -2.0),  # -16 * 2**-3
        (b"\x01\x03\x01\x0a", 3072.0),  # 3 * 2**10
        (b"\x01\x00\x01\x00", 0.0),
        (b"\x01\x01\x81\x01", 0.5),
        # 0.1 as dlib writes a double: 0x1999999999999a * 2**-56
        (b"\x07\x9a\x99\x99\x99\x99\x99\x19\x81\x38", 0.1),
        # the loss margin in dlib_face_recognition_resnet_model_v1.dat (bytes 18-23): float32(0.04)
        (b"\x03\x0a\xd7\xa3\x81\x1c", 10737418 * 2.0**-28),
    ],
)
def test_float_literals(data, expected):
    rd = DlibReader(data)
    assert rd.float() == expected
    assert rd.at_end()


def test_floats_match_dlib_pickles_when_dlib_is_installed():
    dlib = pytest.importorskip("dlib")
    values = [1.5, -2.0, 0.0, 3.0e-300, 1.0e300, 0.1, -123.456]
    (state,) = dlib.vector(values).__getstate__()
    rd = DlibReader(state)
    assert (rd.int(), rd.int()) == (-len(values), -1)  # dlib writes a matrix's size negated
    assert [rd.float() for _ in values] == values
    assert rd.at_end()


def test_float_special_values():
    # float_details: mantissa 0 with exponent is_inf = 32000, is_ninf = 32001, is_nan = 32002
    rd = DlibReader(b"\x01\x00\x02\x00\x7d" + b"\x01\x00\x02\x01\x7d" + b"\x01\x00\x02\x02\x7d")
    assert rd.float() == math.inf
    assert rd.float() == -math.inf
    assert math.isnan(rd.float())


def test_float_truncated():
    with pytest.raises(DlibFormatError, match="unexpected end of data at byte 2"):
        DlibReader(b"\x01\x18").float()


# ------------------------------------------------------------------------------------------ strings


def test_strings():
    rd = DlibReader(b"\x01\x05relu_" + b"\x01\x00" + b"\x01\x0dloss_metric_2")
    assert rd.string() == "relu_"
    assert rd.string() == ""
    assert rd.string() == "loss_metric_2"
    assert rd.at_end()


def test_string_bytes_are_latin1():
    assert DlibReader(b"\x01\x02\xe9\xff").string() == "\u00e9\u00ff"


def test_string_truncated():
    with pytest.raises(DlibFormatError, match="unexpected end of data at byte 2: wanted 5 bytes, 3 left"):
        DlibReader(b"\x01\x05rel").string()


def test_expect_string():
    rd = DlibReader(b"\x01\x05relu_")
    assert rd.expect_string("con_4", "relu_") == "relu_"


def test_expect_string_mismatch_names_what_was_found():
    rd = DlibReader(b"\x01\x00\x01\x05relv_")
    rd.int()
    with pytest.raises(DlibFormatError, match=r"expected one of \('relu_',\) at byte 2, got 'relv_'"):
        rd.expect_string("relu_")


def test_expect_string_truncated():
    with pytest.raises(DlibFormatError, match=r"expected one of \('relu_',\) at byte 0: unexpected end"):
        DlibReader(b"\x01\x05re").expect_string("relu_")


def test_expect_int():
    assert DlibReader(b"\x01\x02").expect_int(1, 2) == 2
    with pytest.raises(DlibFormatError, match=r"expected layer version in \(1,\) at byte 0, got 3"):
        DlibReader(b"\x01\x03").expect_int(1, what="layer version")


# ------------------------------------------------------------------------------------------ tensors

# float32 little-endian: 0.5 = 0x3f000000, -1.25 = 0xbfa00000, 3.0 = 0x40400000, 0.0, 2.0 = 0x40000000,
# -7.5 = 0xc0f00000
SIX_FLOATS = bytes.fromhex("0000003f 0000a0bf 00004040 00000000 00000040 0000f0c0")
TENSOR_2x3x1x1 = b"\x01\x02" + b"\x01\x02\x01\x03\x01\x01\x01\x01" + SIX_FLOATS


def test_tensor():
    rd = DlibReader(TENSOR_2x3x1x1)
    t = rd.tensor()
    assert t.dtype == np.float32
    assert t.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(t.reshape(2, 3), [[0.5, -1.25, 3.0], [0.0, 2.0, -7.5]])
    assert rd.at_end()


def test_tensor_is_a_writable_copy():
    data = bytes(TENSOR_2x3x1x1)
    t = DlibReader(data).tensor()
    assert t.flags.writeable  # a view of the file's bytes would be read-only
    t[0, 0, 0, 0] = 9.0
    assert DlibReader(data).tensor()[0, 0, 0, 0] == 0.5


def test_empty_tensor():
    # how dlib writes the empty gradient/output tensors of a saved net
    rd = DlibReader(b"\x01\x02" + b"\x01\x00" * 4)
    assert rd.tensor().shape == (0, 0, 0, 0)
    assert rd.at_end()


def test_tensor_wrong_version():
    with pytest.raises(DlibFormatError, match=r"expected tensor version in \(2,\) at byte 0, got 1"):
        DlibReader(b"\x01\x01" + TENSOR_2x3x1x1[2:]).tensor()


def test_tensor_truncated_data():
    with pytest.raises(DlibFormatError, match="unexpected end of data at byte 10: wanted 24 bytes, 20 left"):
        DlibReader(TENSOR_2x3x1x1[:-4]).tensor()


def test_tensor_truncated_dims():
    with pytest.raises(DlibFormatError, match="unexpected end of data"):
        DlibReader(b"\x01\x02\x01\x02\x01\x03").tensor()


def test_tensor_negative_dimension():
    with pytest.raises(DlibFormatError, match="negative tensor dimension"):
        DlibReader(b"\x01\x02\x81\x02\x01\x03\x01\x01\x01\x01" + SIX_FLOATS).tensor()


def test_tensor_huge_dimension_is_a_format_error():
    # dims 2**40 x 1 x 1 x 1: far more floats than the data holds
    data = b"\x01\x02\x06\x00\x00\x00\x00\x00\x01" + b"\x01\x01" * 3 + SIX_FLOATS
    with pytest.raises(DlibFormatError, match="unexpected end of data"):
        DlibReader(data).tensor()


def test_tensor_dims_whose_product_overflows_int64_is_a_format_error():
    data = b"\x01\x02" + b"\x05\x00\x00\x00\x00\x01" * 2 + b"\x01\x01" * 2
    with pytest.raises(DlibFormatError):
        DlibReader(data).tensor()


def test_alias_tensor():
    rd = DlibReader(b"\x01\x01" + b"\x01\x20\x01\x03\x01\x07\x01\x07")
    assert rd.alias_tensor() == (32, 3, 7, 7)
    assert rd.at_end()


def test_alias_tensor_wrong_version():
    with pytest.raises(DlibFormatError, match=r"expected alias_tensor version in \(1,\) at byte 0, got 2"):
        DlibReader(b"\x01\x02" + b"\x01\x01" * 4).alias_tensor()


def test_alias_tensor_truncated():
    with pytest.raises(DlibFormatError, match="unexpected end of data at byte 6"):
        DlibReader(b"\x01\x01\x01\x20\x01\x03").alias_tensor()


def test_start_of_the_real_model_file():
    # bytes 0-35 of dlib_face_recognition_resnet_model_v1.dat: loss version, name, margin, threshold
    head = b"\x01\x01\x01\x0dloss_metric_2\x03\x0a\xd7\xa3\x81\x1c\x03\x9a\x99\x99\x81\x18\x01\x02"
    rd = DlibReader(head)
    assert rd.expect_int(1) == 1
    assert rd.expect_string("loss_metric_2") == "loss_metric_2"
    assert rd.float() == pytest.approx(0.04, rel=1e-7)
    assert rd.float() == pytest.approx(0.6, rel=1e-7)
    assert rd.int() == 2  # the fc layer's add_layer version
    assert rd.at_end()
