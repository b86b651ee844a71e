"""Reading and writing images: the one pixel convention of this repo.

On disk: PNG (or any format OpenCV decodes), any mode: RGB, RGBA, L, LA, P
(palette), 8 or 16 bit. In memory after `read_image`: a uint8 numpy array,
(H, W, 3) RGB, or (H, W) when `keep_grey=True` and the file is grey (grey or
grey + alpha; the alpha is dropped, as it is for RGBA).
In tensors: float32, RGB, NCHW, range [0, 1] (`to_tensor` / `to_uint8`).

Writes are atomic: a temp file in the same folder, flushed, then renamed, so a
kill never leaves a torn PNG under the final name.

torch is imported by the tensor helpers only when called: reading and writing files
(make_submission.py, the CSV formats) starts without it.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from srx4.core.errors import UserError
from srx4.core.io import atomic_write_bytes

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
cv2.setNumThreads(1)  # decoding runs in our own worker threads/processes
# OpenCV's own "[ WARN:0@...] PNG input buffer is incomplete" lines: our ImageError already names the file
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class ImageError(UserError, ValueError):
    """A file that is not a decodable image; the message names the file."""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_is_grey(data: bytes) -> bool:
    """True for a grey or grey + alpha PNG (IHDR colour type 0 or 4): OpenCV decodes
    grey + alpha as four channels, so only the header tells it from colour."""
    return data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) > 25 and data[25] in (0, 4)


def scan_png_chunks(data: bytes):
    """(problem or None, bytes to decode) from the PNG chunk structure alone. A problem:
    cut short, or a critical chunk (IHDR, PLTE, IDAT, IEND) failing its CRC. An ancillary
    chunk failing its CRC is dropped (libpng would skip it anyway). Checked before OpenCV,
    whose libpng otherwise prints its own "libpng error/warning" lines for these files."""
    pos, drop = 8, []
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return f"truncated PNG ({kind.decode('latin-1')} chunk cut short)", data
        if zlib.crc32(data[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            if kind[:1].isupper():
                return f"corrupt PNG ({kind.decode('latin-1')} chunk fails its CRC)", data
            drop.append((pos, end))
        if kind == b"IEND":
            for start, stop in reversed(drop):
                data = data[:start] + data[stop:]
            return None, data
        pos = end
    return "truncated PNG (no IEND chunk)", data


def decode_image(data: bytes, name: str = "<bytes>", keep_grey=False, keep_alpha=False):
    """Decode encoded image bytes to uint8 RGB (H, W, 3), grey (H, W) or RGBA (H, W, 4)."""
    if data[:8] == PNG_SIGNATURE:
        problem, data = scan_png_chunks(data)
        if problem:
            raise ImageError(f"{name}: {problem}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if img is None:
        raise ImageError(f"{name}: not a decodable image")
    if img.dtype == np.uint16:  # 16-bit: map 0..65535 onto 0..255 with rounding
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(np.rint(img.astype(np.float64) * (255 if img.max() <= 1 else 1)), 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return img if keep_grey else np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        if keep_grey and not keep_alpha and png_is_grey(data):   # grey + alpha: B = G = R
            return np.ascontiguousarray(img[:, :, 0])
        rgba = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        return rgba if keep_alpha else np.ascontiguousarray(rgba[:, :, :3])
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path, keep_grey=False, keep_alpha=False) -> np.ndarray:
    """Read any image file as uint8: (H, W, 3) RGB; (H, W) grey with keep_grey;
    (H, W, 4) RGBA with keep_alpha when the file has alpha. Raises ImageError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (IsADirectoryError, PermissionError, FileNotFoundError) as err:
        raise ImageError(f"{path}: cannot read ({err.__class__.__name__})") from None
    return decode_image(data, str(path), keep_grey=keep_grey, keep_alpha=keep_alpha)


def image_size(path):
    """(width, height) from the file header without decoding pixels, or raise ImageError."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(f"{path}: not an image ({err.__class__.__name__})") from None


def encode_png(img: np.ndarray, level: int = 3) -> bytes:
    """uint8 (H, W), (H, W, 3) RGB or (H, W, 4) RGBA -> PNG bytes."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR if img.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, int(level)])
    if not ok:
        raise ImageError("PNG encoding failed")
    return buf.tobytes()


def write_png(path, img: np.ndarray, level: int = 3):
    """Atomically write a uint8 image as PNG."""
    atomic_write_bytes(path, encode_png(img, level))


def to_tensor(img: np.ndarray, dtype=None) -> torch.Tensor:
    """uint8 (H, W, C) -> (C, H, W) in [0, 1] (float32 unless `dtype`); a grey (H, W) image -> (1, H, W)."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(img)).to(dtype or torch.float32).div_(255)
    return t[None] if img.ndim == 2 else t.permute(2, 0, 1)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float (C, H, W) in [0, 1] -> uint8 (H, W, C): clamped and rounded, never wrapped."""
    return to_uint8_batch(tensor[None])[0]


def to_uint8_batch(tensor: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C), converted and laid out where the
    tensor is (on a GPU: one 4x smaller copy to the host for the whole batch)."""
    return tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).contiguous().cpu().numpy()


def list_images(folder):
    """Image files in a folder (no hidden files, no subfolders), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def to_float(batch_uint8: torch.Tensor, device) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 on device in [0, 1]."""
    return batch_uint8.to(device, non_blocking=True).float().div_(255)
