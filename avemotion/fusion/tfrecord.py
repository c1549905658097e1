"""tf.train.Example and TFRecord framing written without TensorFlow, so that the fuse jobs run in
the preprocessing environment and skip TensorFlow's import time (tests/test_fusion_shards.py checks
the bytes against TensorFlow's own parser and CRC).

Example{features=1: Features{feature=1: map<string, Feature>}}; Feature is one of bytes_list=1,
float_list=2, int64_list=3, each a message whose field 1 holds the (packed, for numbers) values.
"""

from __future__ import annotations

import functools
import struct

import numpy as np


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: str, values) -> bytes:
    if kind == "bytes":
        return _field(1, b"".join(_field(1, value) for value in values))
    if kind == "float":
        return _field(2, _field(1, np.asarray(values, dtype="<f4").tobytes()))
    if kind == "int":
        return _field(3, _field(1, b"".join(_varint(int(value)) for value in values)))
    raise ValueError(f"unknown feature kind {kind!r}")


def encode_example(features: dict) -> bytes:
    """A serialised tf.train.Example of {name: (kind, values)}, features in name order."""
    entries = (_field(1, _field(1, name.encode()) + _field(2, _feature(*features[name]))) for name in sorted(features))
    return _field(1, b"".join(entries))


def tfrecord_record(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_CRC_TABLE = np.arange(256, dtype=np.uint32)
for _ in range(8):
    _CRC_TABLE = np.where(_CRC_TABLE & 1, (_CRC_TABLE >> 1) ^ np.uint32(0x82F63B78), _CRC_TABLE >> 1).astype(np.uint32)
_LANE = 64  # bytes per lane of the vectorised CRC


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, vectorised with NumPy.

    The CRC register without its initial value is linear, so the data is cut into lanes of _LANE
    bytes (zero-padded in front, which leaves that register unchanged) whose CRCs are computed side
    by side, then merged pairwise: crc(a + b) = shift(crc(a), len(b)) ^ crc(b). The initial value
    0xFFFFFFFF is the same as inverting the first four bytes.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    if len(buffer) < 4 * _LANE:
        crc = 0xFFFFFFFF
        for byte in buffer.tolist():
            crc = int(_CRC_TABLE[(crc ^ byte) & 0xFF]) ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    lanes = 1 << (-(-len(buffer) // _LANE) - 1).bit_length()
    padded = np.zeros(lanes * _LANE, dtype=np.uint8)
    start = len(padded) - len(buffer)
    padded[start:] = buffer
    padded[start : start + 4] ^= 0xFF
    registers = np.zeros(lanes, dtype=np.uint32)
    for column in padded.reshape(lanes, _LANE).T:
        registers = _CRC_TABLE[(registers ^ column) & 0xFF] ^ (registers >> 8)
    level = 0
    while len(registers) > 1:
        registers = _shift(_shift_tables(level), registers[0::2]) ^ registers[1::2]
        level += 1
    return int(registers[0]) ^ 0xFFFFFFFF


def _shift(tables: np.ndarray, registers: np.ndarray) -> np.ndarray:
    """The registers after the number of zero bytes ``tables`` stands for (a linear map, by byte)."""
    return tables[0][registers & 0xFF] ^ tables[1][(registers >> 8) & 0xFF] ^ tables[2][(registers >> 16) & 0xFF] ^ tables[3][registers >> 24]


@functools.lru_cache(maxsize=None)
def _shift_tables(level: int) -> np.ndarray:
    """(4, 256) tables of the shift by _LANE * 2**level zero bytes, for each byte of the register."""
    if level > 0:
        half = _shift_tables(level - 1)
        return _shift(half, half)
    registers = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None]).astype(np.uint32)
    for _ in range(_LANE):
        registers = _CRC_TABLE[registers & 0xFF] ^ (registers >> 8)
    return registers
