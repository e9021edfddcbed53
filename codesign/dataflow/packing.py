"""Stream word packing shared by the RTL harness, the PYNQ driver and the tests.

Element 0 of the innermost (folded) dimension sits in the least significant bits, signed
values are two's complement, bipolar -1/+1 maps to bit 0/1 (FINN's convention). Written with
numpy and Python ints (no qonnx import) so the generated board driver can carry a copy.
"""

from __future__ import annotations

import numpy as np


def to_unsigned_codes(values: np.ndarray, bits: int, signed: bool, bipolar: bool = False) -> np.ndarray:
    """Map integer values to their `bits`-wide unsigned bit patterns (as uint64)."""
    v = np.asarray(values)
    if not np.all(v == np.round(v)):
        raise ValueError("stream values must be integers")
    v = v.astype(np.int64)
    if bipolar:
        if not np.all((v == 1) | (v == -1)):
            raise ValueError("bipolar stream values must be -1 or +1")
        return ((v + 1) // 2).astype(np.uint64)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"values out of range for {'signed' if signed else 'unsigned'} {bits}-bit: "
                         f"[{v.min()}, {v.max()}] not in [{lo}, {hi}]")
    return (v & ((1 << bits) - 1)).astype(np.uint64)


def from_unsigned_codes(codes: np.ndarray, bits: int, signed: bool, bipolar: bool = False) -> np.ndarray:
    """Inverse of `to_unsigned_codes`: bit patterns back to integer values (int64)."""
    c = np.asarray(codes).astype(np.int64)
    if bipolar:
        return 2 * c - 1
    if signed:
        c = np.where(c >= (1 << (bits - 1)), c - (1 << bits), c)
    return c


def pack_words(values: np.ndarray, bits: int, signed: bool, fold: int, bipolar: bool = False) -> list[int]:
    """Pack a flat sequence of values into stream words of `fold` elements each.

    Returns Python ints (arbitrary width); word i holds values[i*fold:(i+1)*fold], element 0 in
    the least significant bits.
    """
    flat = np.asarray(values).reshape(-1)
    if flat.size % fold:
        raise ValueError(f"{flat.size} values do not split into words of {fold}")
    codes = to_unsigned_codes(flat, bits, signed, bipolar).reshape(-1, fold)
    words = []
    for row in codes:
        w = 0
        for i, c in enumerate(row.tolist()):
            w |= int(c) << (i * bits)
        words.append(w)
    return words


def unpack_words(words: list[int], bits: int, signed: bool, fold: int, bipolar: bool = False) -> np.ndarray:
    """Inverse of `pack_words`: a list of words back to a flat int64 array."""
    mask = (1 << bits) - 1
    codes = np.array([[(int(w) >> (i * bits)) & mask for i in range(fold)] for w in words], dtype=np.uint64)
    return from_unsigned_codes(codes.reshape(-1), bits, signed, bipolar)


def word_bytes(width_bits: int) -> int:
    """Bytes per word when a stream of `width_bits` is padded to whole bytes (AXI)."""
    return (width_bits + 7) // 8


def words_to_bytes(words: list[int], width_bits: int) -> bytes:
    """Little-endian byte image of the words, each padded to whole bytes (what a DMA moves)."""
    n = word_bytes(width_bits)
    return b"".join(int(w).to_bytes(n, "little") for w in words)


def bytes_to_words(data: bytes, width_bits: int) -> list[int]:
    """Inverse of `words_to_bytes`."""
    n = word_bytes(width_bits)
    if len(data) % n:
        raise ValueError(f"{len(data)} bytes are not a whole number of {n}-byte words")
    return [int.from_bytes(data[i:i + n], "little") for i in range(0, len(data), n)]
