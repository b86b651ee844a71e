"""SRResNet (Ledig et al. 2017): the repo's default model.

    LR (N,3,H,W) -> 9x9 conv + PReLU -> B x [conv-BN-PReLU-conv-BN + x] -> conv-BN
    + the head's output -> 2 x [conv, PixelShuffle(2), PReLU] -> 9x9 conv -> SR (N,3,4H,4W)
    (+ bicubic(LR) with bicubic_residual)
"""
from torch import nn

from srx4.archs.base import BicubicResidual, SRModel, pixel_shuffle_stages, zero_init


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN plus the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


class SRResNet(SRModel):
    """Args: scale 2, 3 or 4; num_blocks (16 in the paper); channels (64); bicubic_residual:
    learn SR - bicubic(LR), the tail starting at zero so an untrained net is bicubic."""
    name = "srresnet"
    demo_preset = {"num_blocks": 4, "channels": 32}
    train_flags = ("num_blocks", "channels", "bicubic_residual")

    def __init__(self, scale: int = 4, num_blocks: int = 16, channels: int = 64, bicubic_residual: bool = False):
        super().__init__(scale)
        self.remember(num_blocks=num_blocks, channels=channels, bicubic_residual=bicubic_residual)
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.upsample = pixel_shuffle_stages(channels, scale, nn.PReLU)
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)
        self.bicubic = BicubicResidual(scale) if bicubic_residual else None
        if bicubic_residual:
            zero_init(self.tail)
        # head 4, 2 per block, body tail 1, upsampling and tail convs <= 3 LR px, bicubic 2
        self.receptive_radius = 4 + 2 * num_blocks + 1 + 3 + (2 if bicubic_residual else 0)
        self.bytes_per_lr_pixel = channels * 4 * 60

    def checkpoint_blocks(self):
        return list(self.blocks)

    def forward(self, lr):                      # lr: (N, 3, H, W) in [0, 1]
        feat = self.head(lr)                    # (N, C, H, W)
        feat = feat + self.body_tail(self.blocks(feat))
        sr = self.tail(self.upsample(feat))     # (N, 3, sH, sW)
        return self.bicubic(sr, lr) if self.bicubic is not None else sr
