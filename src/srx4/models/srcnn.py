"""SRCNN (Dong et al. 2014), the baseline, and bicubic upsampling itself.

    LR (N,3,H,W) -> MATLAB bicubic x s -> f1 conv (64) ReLU -> f2 conv (32) ReLU -> f3 conv -> SR
    (on RGB, or on Y alone with Cb, Cr kept bicubic)
"""
import math

import torch
from torch import nn

from srx4.models.base import SRModel
from srx4.image.resize import BicubicUpscale, resize_tensor
from srx4.image.metrics import rgb_to_ycbcr, ycbcr_to_rgb


class SRCNN(SRModel):
    """Args: scale (any integer); kernel_sizes (9, 5, 5) or (9, 1, 5); y_only: work on Y as the paper."""
    name = "srcnn"
    train_flags = ("y_only",)

    @classmethod
    def options_from_flags(cls, flags):
        kernels = flags.get("srcnn_kernels", "9-5-5")
        return {**super().options_from_flags(flags), "kernel_sizes": [int(k) for k in kernels.split("-")]}

    def __init__(self, scale: int = 4, kernel_sizes=(9, 5, 5), y_only: bool = False):
        super().__init__(scale)
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.remember(kernel_sizes=list(kernel_sizes), y_only=y_only)
        self.y_only = y_only
        k1, k2, k3 = kernel_sizes
        c = 1 if y_only else 3
        self.body = nn.Sequential(
            nn.Conv2d(c, 64, k1, padding=k1 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, k2, padding=k2 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(32, c, k3, padding=k3 // 2))
        self.receptive_radius = 2 + math.ceil((k1 // 2 + k2 // 2 + k3 // 2) / scale)
        self.bytes_per_lr_pixel = 64 * 4 * scale * scale * 4      # 64-channel maps at HR size
        self.bicubic = BicubicUpscale(scale)

    def forward(self, lr):                        # lr: (N, 3, H, W) in [0, 1]
        up = self.bicubic(lr)                     # (N, 3, sH, sW) bicubic
        if not self.y_only:
            return self.body(up)
        ycbcr = rgb_to_ycbcr(up)
        y = self.body(ycbcr[:, :1])
        return ycbcr_to_rgb(torch.cat([y, ycbcr[:, 1:]], dim=1))


class Bicubic(SRModel):
    """The baseline: MATLAB-bicubic upsampling, no parameters, never in reduced precision."""
    name = "bicubic"

    def forward(self, lr):
        with torch.autocast(lr.device.type, enabled=False):
            return resize_tensor(lr.float(), self.scale)
