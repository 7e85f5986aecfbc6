"""A minimal JPEG lossless (process 14, first-order prediction, SV1) encoder for greyscale test images.

No installed library encodes this transfer syntax, so the tests write their own codestream from the
ITU-T T.81 rules (Annex H) to check that radmi decodes it pixel-identically through pydicom's plug-ins.
"""

from __future__ import annotations

import struct

import numpy as np

# one Huffman table: difference categories 0..16 all get 5-bit codes 00000..10000 (no all-ones code)
_CODE_LENGTH = 5


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        for shift in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> shift) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0x00)  # byte stuffing
                self.acc, self.n = 0, 0

    def flush(self) -> bytes:
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1-bits
        return bytes(self.out)


def encode_jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """Encode ``pixels`` (rows x cols, unsigned ints < 2**precision) with predictor 1 and no point transform."""
    rows, cols = pixels.shape
    x = pixels.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]  # first row: left neighbour
    pred[1:, 0] = x[:-1, 0]  # first column: the sample above
    pred[1:, 1:] = x[1:, :-1]  # predictor 1 (Ra) elsewhere
    diffs = (x - pred) % 65536
    diffs = np.where(diffs >= 32768, diffs - 65536, diffs)
    header = b"\xff\xd8"
    header += _segment(0xFFC3, struct.pack(">BHHB", precision, rows, cols, 1) + bytes([1, 0x11, 0]))
    bits = bytes([0, 0, 0, 0, 17] + [0] * 11)
    header += _segment(0xFFC4, bytes([0x00]) + bits + bytes(range(17)))
    header += _segment(
        0xFFDA, bytes([1, 1, 0x00, 1, 0, 0])
    )  # Ns=1, Cs=1 Td=0, Ss=1 (predictor), Se=0, Ah/Al=0
    writer = _BitWriter()
    for diff in diffs.ravel().tolist():
        size = 0 if diff == 0 else int(abs(diff)).bit_length()
        writer.write(size, _CODE_LENGTH)
        if 0 < size < 16:
            writer.write(diff if diff > 0 else diff + (1 << size) - 1, size)
    return header + writer.flush() + b"\xff\xd9"
