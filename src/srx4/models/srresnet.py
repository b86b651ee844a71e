"""SRResNet (Ledig et al. 2017): the repo's default model.

    LR (N,3,H,W) -> 9x9 conv + PReLU -> B x [conv-BN-PReLU-conv-BN + x] -> conv-BN
    + the head's output -> 2 x [conv, PixelShuffle(2), PReLU] -> 9x9 conv -> SR (N,3,4H,4W)
    (+ bicubic(LR) with bicubic_residual)
"""
from torch import nn

from srx4.models.base import ResidualTrunk, pixel_shuffle_stages


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN plus the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


class SRResNet(ResidualTrunk):
    """Args: scale 2, 3 or 4; num_blocks (16 in the paper); channels (64); bicubic_residual:
    learn SR - bicubic(LR), the tail starting at zero so an untrained net is bicubic (True,
    as train.py trains it; the paper's net is False)."""
    name = "srresnet"
    demo_preset = {"num_blocks": 4, "channels": 32}
    train_flags = ("num_blocks", "channels", "bicubic_residual")

    @classmethod
    def from_config(cls, config: dict, state: dict = None):
        """A model.json written before bicubic_residual was recorded meant the plain net."""
        return super().from_config({"bicubic_residual": False, **config}, state)

    def __init__(self, scale: int = 4, num_blocks: int = 16, channels: int = 64, bicubic_residual: bool = True):
        super().__init__(scale)
        self.remember(num_blocks=num_blocks, channels=channels, bicubic_residual=bicubic_residual)
        # head 4, 2 per block, body tail 1, upsampling and tail convs <= 3 LR px
        self.assemble(head=nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU()),
                      blocks=nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)]),
                      body_tail=nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)),
                      upsample=pixel_shuffle_stages(channels, scale, nn.PReLU),
                      tail=nn.Conv2d(channels, 3, 9, padding=4),
                      bicubic_residual=bicubic_residual, radius=4 + 2 * num_blocks + 1 + 3)
