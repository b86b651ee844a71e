"""The SRGB competition's cell ("Super Resolution in Video Games"): one HR image as
OpenCV holds it (BGR, uint8, H x W x 3) flattened in C order, run-length encoded as
(value, count) byte pairs with every run cut at 255, compressed by zlib at level 9
and written in base64; the organisers' starter code stores the text of a Python
bytes literal, b'eJz...', so a cell comes in either form (`literal`).

    encode_rle(rgb)  uint8 (H, W, 3) RGB -> cell text       (numpy, no per-pixel loop)
    decode_rle(cell, height, width)  -> uint8 (H, W, 3) RGB

The size is not in the cell: a reader takes it from the test LR image x scale.
"""
import base64
import binascii
import zlib

import numpy as np

MAX_RUN = 255


def run_pairs(flat: np.ndarray) -> bytes:
    """uint8 (N,) -> bytes v0 c0 v1 c1 ...: each run of equal values as (value, count),
    runs longer than 255 cut into pieces of 255 and a remainder."""
    flat = np.ascontiguousarray(flat, dtype=np.uint8).ravel()
    if flat.size == 0:
        return b""
    change = np.empty(flat.size, dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    starts = np.flatnonzero(change)                                                # (runs,)
    lengths = np.diff(starts, append=flat.size)                                    # (runs,)
    if lengths.max() <= MAX_RUN:                   # the usual case in photos: one pair per run
        pairs = np.empty((starts.size, 2), dtype=np.uint8)
        pairs[:, 0] = flat[starts]
        pairs[:, 1] = lengths
        return pairs.tobytes()
    pieces = (lengths + MAX_RUN - 1) // MAX_RUN                                    # pairs per run
    counts = np.full(int(pieces.sum()), MAX_RUN, dtype=np.uint8)                   # (pairs,)
    counts[np.cumsum(pieces) - 1] = lengths - MAX_RUN * (pieces - 1)              # each run's last piece
    pairs = np.empty((counts.size, 2), dtype=np.uint8)
    pairs[:, 0] = np.repeat(flat[starts], pieces)
    pairs[:, 1] = counts
    return pairs.tobytes()


def encode_rle(rgb: np.ndarray, literal: bool = True) -> str:
    """uint8 (H, W, 3) RGB -> the cell: base64 of zlib(level 9) of the run pairs of its BGR
    bytes, as a bytes literal b'...' (`literal`) or bare."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"an rle cell holds a uint8 (H, W, 3) image, not {rgb.dtype} {rgb.shape}")
    text = base64.b64encode(zlib.compress(run_pairs(rgb[:, :, ::-1]), 9)).decode("ascii")
    return f"b'{text}'" if literal else text


def is_literal(cell: str) -> bool:
    cell = cell.strip()
    return len(cell) >= 3 and cell[0] == "b" and cell[1] in "'\"" and cell[-1] == cell[1]


def decode_rle(cell: str, height: int, width: int) -> np.ndarray:
    """A cell in either form -> uint8 (height, width, 3) RGB; ValueError saying what is wrong."""
    cell = cell.strip()
    if is_literal(cell):
        cell = cell[2:-1]
    try:
        pairs = np.frombuffer(zlib.decompress(base64.b64decode(cell, validate=True)), dtype=np.uint8)
    except (binascii.Error, zlib.error, ValueError) as err:
        raise ValueError(f"not base64 of zlib data ({err})") from None
    if pairs.size % 2:
        raise ValueError("an odd number of bytes: not (value, count) pairs")
    values, counts = pairs[0::2], pairs[1::2]
    if counts.size and counts.min() == 0:
        raise ValueError("a run of length 0")
    total = int(counts.sum(dtype=np.int64))
    if total != height * width * 3:
        raise ValueError(f"{total} values, not {height} x {width} x 3 = {height * width * 3}")
    bgr = np.repeat(values, counts).reshape(height, width, 3)
    return np.ascontiguousarray(bgr[:, :, ::-1])
