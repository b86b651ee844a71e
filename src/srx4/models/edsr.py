"""EDSR-baseline (Lim et al. 2017): SRResNet without BatchNorm, with residual scaling.

    LR (N,3,H,W) -> 3x3 conv -> B x [conv-ReLU-conv, x res_scale, + x] -> conv + the head's
    output -> 2 x [conv, PixelShuffle(2)] -> 3x3 conv -> SR (N,3,4H,4W)   (+ bicubic(LR))

The paper's baseline is 16 blocks x 64 channels with res_scale 1 (0.1 is for its
32 x 256 model). Instead of subtracting the DIV2K mean colour it learns the
residual over bicubic upsampling by default, as the other models here do.
"""
from torch import nn

from srx4.models.base import ResidualTrunk, pixel_shuffle_stages


class ResBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.body(x)


class EDSR(ResidualTrunk):
    """Args: scale 2, 3 or 4; num_blocks (16); channels (64); res_scale (1.0); bicubic_residual."""
    name = "edsr"
    demo_preset = {"num_blocks": 4, "channels": 32}
    train_flags = ("num_blocks", "channels", "bicubic_residual")

    def __init__(self, scale: int = 4, num_blocks: int = 16, channels: int = 64, res_scale: float = 1.0,
                 bicubic_residual: bool = True):
        super().__init__(scale)
        self.remember(num_blocks=num_blocks, channels=channels, res_scale=res_scale, bicubic_residual=bicubic_residual)
        # head 1, 2 per block, body tail 1, upsampling and tail <= 2 LR px
        self.assemble(head=nn.Conv2d(3, channels, 3, padding=1),
                      blocks=nn.Sequential(*[ResBlock(channels, res_scale) for _ in range(num_blocks)]),
                      body_tail=nn.Conv2d(channels, channels, 3, padding=1),
                      upsample=pixel_shuffle_stages(channels, scale),
                      tail=nn.Conv2d(channels, 3, 3, padding=1),
                      bicubic_residual=bicubic_residual, radius=1 + 2 * num_blocks + 1 + 2)
