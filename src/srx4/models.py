"""The networks: SRResNet (Ledig et al. 2017), SRCNN (Dong et al. 2014), bicubic.

All take LR images (N, 3, H, W) in [0, 1] and return SR (N, 3, s*H, s*W) in
[0, 1] (not clamped in training; predict.py clamps). `build_model(config)`
rebuilds any of them from the plain dict saved as `model.json`.
"""
import math

import torch
from torch import nn

from srx4.imresize import BicubicUpscale, resize_tensor
from srx4.metrics import rgb_to_ycbcr, ycbcr_to_rgb


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN plus the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


def upsampler(channels: int, scale: int) -> nn.Sequential:
    """conv + PixelShuffle stages: two x2 stages for x4, one x2 for x2, one x3 for x3."""
    if scale in (2, 4):
        factors = [2] * int(math.log2(scale))
    elif scale == 3:
        factors = [3]
    else:
        raise ValueError(f"SRResNet supports scale 2, 3 or 4, not {scale}")
    layers = []
    for f in factors:
        layers += [nn.Conv2d(channels, channels * f * f, 3, padding=1), nn.PixelShuffle(f), nn.PReLU()]
    return nn.Sequential(*layers)


class SRResNet(nn.Module):
    """SRResNet: 9x9 head, `num_blocks` residual blocks, a global skip, PixelShuffle
    upsampling, 9x9 tail. With `bicubic_residual` the MATLAB-bicubic upsampled
    input is added to the output, so an untrained net starts near bicubic.

    Args:
        scale: 2, 3 or 4.
        num_blocks: residual blocks (16 in the paper).
        channels: feature width (64 in the paper).
        bicubic_residual: learn SR - bicubic(LR) instead of SR.
    """

    def __init__(self, scale: int = 4, num_blocks: int = 16, channels: int = 64, bicubic_residual: bool = False):
        super().__init__()
        self.arch_name, self.channels = "srresnet", channels
        self.scale, self.bicubic_residual = scale, bicubic_residual
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.upsample = upsampler(channels, scale)
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)
        if bicubic_residual:  # start from "SR = bicubic": the learned part begins near zero
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)
            self.bicubic = BicubicUpscale(scale)
        # receptive radius in LR pixels: head 4, 2 per block, 1 body tail, upsampling and
        # tail convs (<= 1 + 1 + 1 LR pixel), +2 for the bicubic residual
        self.receptive_radius = 4 + 2 * num_blocks + 1 + 3 + (2 if bicubic_residual else 0)

    def forward(self, lr):                      # lr: (N, 3, H, W) in [0, 1]
        feat = self.head(lr)                    # (N, C, H, W)
        feat = feat + self.body_tail(self.blocks(feat))
        sr = self.tail(self.upsample(feat))     # (N, 3, sH, sW)
        if self.bicubic_residual:
            with torch.autocast(lr.device.type, enabled=False):     # in fp32 under bf16/fp16 autocast
                sr = sr.float() + self.bicubic(lr.float())       # + MATLAB bicubic of the input, (N, 3, sH, sW)
        return sr


class SRCNN(nn.Module):
    """SRCNN: MATLAB-bicubic pre-upsampling, then f1-f2-f3 convolutions (9-5-5 or 9-1-5),
    64 and 32 feature maps, on RGB or on the Y channel alone (Cb, Cr stay bicubic).

    Args:
        scale: any integer factor.
        kernel_sizes: (9, 5, 5) or (9, 1, 5).
        y_only: work on Y (as the paper) and keep bicubic chroma.
    """

    def __init__(self, scale: int = 4, kernel_sizes=(9, 5, 5), y_only: bool = False):
        super().__init__()
        self.arch_name, self.channels = "srcnn", 64
        self.scale, self.y_only = scale, y_only
        k1, k2, k3 = kernel_sizes
        c = 1 if y_only else 3
        self.body = nn.Sequential(
            nn.Conv2d(c, 64, k1, padding=k1 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, k2, padding=k2 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(32, c, k3, padding=k3 // 2))
        self.receptive_radius = 2 + math.ceil((k1 // 2 + k2 // 2 + k3 // 2) / scale)
        self.bicubic = BicubicUpscale(scale)

    def forward(self, lr):                        # lr: (N, 3, H, W) in [0, 1]
        up = self.bicubic(lr)                     # (N, 3, sH, sW) bicubic
        if not self.y_only:
            return self.body(up)
        ycbcr = rgb_to_ycbcr(up)
        y = self.body(ycbcr[:, :1])
        return ycbcr_to_rgb(torch.cat([y, ycbcr[:, 1:]], dim=1))


class Bicubic(nn.Module):
    """The baseline: MATLAB-bicubic upsampling, no parameters."""

    def __init__(self, scale: int = 4):
        super().__init__()
        self.arch_name, self.channels = "bicubic", 64
        self.scale, self.receptive_radius = scale, 2

    def forward(self, lr):
        with torch.autocast(lr.device.type, enabled=False):   # the baseline is exact: never bf16/fp16
            return resize_tensor(lr.float(), self.scale)


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from its model.json dict, e.g. {"name": "srresnet", "scale": 4, ...}."""
    name, scale = config["name"], int(config["scale"])
    if name == "srresnet":
        return SRResNet(scale, int(config.get("num_blocks", 16)), int(config.get("channels", 64)),
                        bool(config.get("bicubic_residual", False)))
    if name == "srcnn":
        return SRCNN(scale, tuple(config.get("kernel_sizes", (9, 5, 5))), bool(config.get("y_only", False)))
    if name == "bicubic":
        return Bicubic(scale)
    raise ValueError(f"unknown model {name!r}: expected srresnet, srcnn or bicubic")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
