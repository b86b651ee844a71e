"""MATLAB-compatible bicubic `imresize`, the resize the SR benchmarks were made with.

What makes it MATLAB's (and what PIL / cv2 / torch bicubic all miss):
- Keys cubic with a = -0.5 (torch uses -0.75);
- when shrinking, the kernel is widened by 1/scale (antialiasing);
- out-of-range taps repeat the border pixel;
- the H axis is resized first, then W, and a uint8 image is rounded to uint8
  after each axis pass, as MATLAB's imresize does for uint8 input, rounding
  halves away from zero (MATLAB's `round`; torch.round and numpy round halves
  to even, which leaves 0.04% of the Set5/Set14 LR values one grey level off).

`imresize(img_uint8, 1/4)` reproduces every value of the Set5/Set14 LR_x4
files (a test).
`resize_tensor(x, 4)` is the same arithmetic on float tensors (N, C, H, W) with
no rounding: the bicubic baseline, SRCNN's pre-upsampling, SRResNet's bicubic
residual and every score's bicubic line use it, on any device. An integer
upscale runs as a fixed 5-tap convolution per output phase followed by a pixel
shuffle (`_upscale_axis`), with replicate padding for MATLAB's border rule:
the same weights as the general gather form (`_resize_axis`, kept for
downscaling and fractional scales; tested equal), without its HR-sized index
gather.
"""
import math
from functools import lru_cache

import numpy as np
import torch


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel, a = -0.5."""
    ax = x.abs()
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def contributions(in_len: int, out_len: int, scale: float):
    """For each output index along one axis: the input indices and weights MATLAB uses.

    Returns (indices (out_len, taps) int64, weights (out_len, taps) float64)."""
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)          # output pixel centre in input coordinates
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if antialias else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    indices = (indices.long() - 1).clamp(0, in_len - 1)   # replicate the border pixels
    keep = weights.abs().sum(dim=0) > 0                # drop all-zero columns
    return indices[:, keep].contiguous(), weights[:, keep].contiguous()


@lru_cache(maxsize=64)
def contributions_on(in_len: int, out_len: int, scale: float, device: torch.device, dtype: torch.dtype):
    """`contributions` copied to a device once: a copy per call would make the host
    wait for the GPU at every forward pass."""
    indices, weights = contributions(in_len, out_len, scale)
    return indices.to(device), weights.to(device, dtype)


def _resize_axis(x: torch.Tensor, dim: int, out_len: int, scale: float) -> torch.Tensor:
    """Resize float tensor x along `dim` (-2 = H, -1 = W)."""
    indices, weights = contributions_on(x.shape[dim], out_len, scale, x.device, x.dtype)
    x = x.movedim(dim, -1)                                   # (..., in_len)
    gathered = x[..., indices]                               # (..., out_len, taps)
    out = (gathered * weights).sum(dim=-1)                   # (..., out_len)
    return out.movedim(-1, dim)


@lru_cache(maxsize=16)
def phase_taps(scale: int) -> torch.Tensor:
    """(5, scale) float64: the weight of LR offsets -2..2 for each of the `scale` output
    phases of an integer upscale. Output j = scale * q + p sits at LR coordinate
    q + (p + 0.5) / scale - 0.5, within half a pixel of q, so 5 taps cover the kernel."""
    phase = (torch.arange(scale, dtype=torch.float64) + 0.5) / scale - 0.5      # (scale,)
    offsets = torch.arange(-2, 3, dtype=torch.float64)                         # (5,)
    weights = cubic(phase[None, :] - offsets[:, None])                        # (5, scale)
    return weights / weights.sum(dim=0, keepdim=True)


@lru_cache(maxsize=64)
def phase_taps_on(scale: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return phase_taps(scale).to(device, dtype)


def _upscale_axis(x: torch.Tensor, dim: int, scale: int) -> torch.Tensor:
    """Integer upscale of float x along `dim`: (..., L) -> (..., scale * L)."""
    x = x.movedim(dim, -1)
    length = x.shape[-1]
    padded = torch.cat([x[..., :1].expand(*x.shape[:-1], 2), x, x[..., -1:].expand(*x.shape[:-1], 2)], dim=-1)
    windows = padded.unfold(-1, 5, 1)                                        # (..., L, 5)
    out = windows @ phase_taps_on(scale, x.device, x.dtype)                   # (..., L, scale)
    return out.reshape(*x.shape[:-1], length * scale).movedim(-1, dim)


class BicubicUpscale(torch.nn.Module):
    """MATLAB bicubic integer upscale of float (N, C, H, W) as a network layer: edge
    replication by 2, one fixed 5x5 convolution per channel giving its scale^2 output
    phases (the outer product of `phase_taps`), then PixelShuffle. Equal to
    `resize_tensor(x, scale)` up to float rounding; one conv instead of gathers, and it
    exports to ONNX. The weights are a non-persistent buffer: not in state dicts."""

    def __init__(self, scale: int, channels: int = 3):
        super().__init__()
        self.scale, self.channels = scale, channels
        taps = phase_taps(scale)                                               # (5, scale)
        kernel = torch.einsum("ai,bj->ijab", taps, taps).reshape(scale * scale, 1, 5, 5)   # phase (i, j) -> 5x5
        self.register_buffer("weight", kernel.repeat(channels, 1, 1, 1).float(), persistent=False)

    def forward(self, x):                                                     # (N, C, H, W)
        # fp32 on a GPU (no autocast) runs as two fp32 matmuls, one per axis: cuDNN would run
        # the conv in TF32 (10-bit mantissa, on by default from Ampere on), up to ~1e-3 off,
        # while torch's matmuls stay full fp32 (torch.backends.cuda.matmul.allow_tf32 is off by
        # default); float64, the other way to be exact, runs at 1/32 rate on a T4. Under
        # autocast it runs in fp16/bf16 like the network it feeds.
        if x.is_cuda and x.dtype == torch.float32 and not torch.is_autocast_enabled():
            return _upscale_axis(_upscale_axis(x, -2, self.scale), -1, self.scale)
        padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")  # (N, C, H + 4, W + 4)
        phases = torch.nn.functional.conv2d(padded, self.weight.to(x.dtype), groups=self.channels)  # (N, C s^2, H, W)
        return torch.nn.functional.pixel_shuffle(phases, self.scale)          # (N, C, sH, sW)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's `round`: halves go away from zero (2.5 -> 3, -2.5 -> -3)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def output_size(in_len: int, scale: float) -> int:
    return int(math.ceil(in_len * scale - 1e-9))


def resize_tensor(x: torch.Tensor, scale: float, round_each_pass: bool = False) -> torch.Tensor:
    """MATLAB bicubic resize of float (..., H, W) by `scale` (4 = up, 1/4 = down).

    With round_each_pass the values (in [0, 255]) are rounded and clipped after
    each axis, as MATLAB does for uint8 images."""
    h, w = x.shape[-2:]
    integer_up = float(scale).is_integer() and scale > 1
    x = _upscale_axis(x, -2, int(scale)) if integer_up else _resize_axis(x, -2, output_size(h, scale), scale)
    if round_each_pass:
        x = round_half_away(x).clamp(0, 255)
    x = _upscale_axis(x, -1, int(scale)) if integer_up else _resize_axis(x, -1, output_size(w, scale), scale)
    if round_each_pass:
        x = round_half_away(x).clamp(0, 255)
    return x


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB `imresize(img, scale, 'bicubic')` for a uint8 (H, W) or (H, W, C) image."""
    assert img.dtype == np.uint8, "imresize expects uint8"
    x = torch.from_numpy(img).double()
    x = x.permute(2, 0, 1) if img.ndim == 3 else x               # (C, H, W) or (H, W)
    y = resize_tensor(x, scale, round_each_pass=True).byte()
    y = y.permute(1, 2, 0) if img.ndim == 3 else y
    return y.contiguous().numpy()


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of `scale` (top-left kept)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
