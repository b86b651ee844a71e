"""A SPAN-style efficient model (after Wan et al. 2024, "Swift Parameter-free Attention
Network", NTIRE 2024 efficient-SR winner): convolutions only, attention without
parameters, re-parameterised 3x3 convolutions.

    LR (N,3,H,W) -> RepConv3 (C) -> B x SPAB -> RepConv3 -> 1x1 over [head, first, last, body]
    -> conv3x3 (3 s^2) + PixelShuffle(s) -> SR (N,3,sH,sW)   (+ bicubic(LR))

SPAB block: h = RepConv3(SiLU(RepConv3(SiLU(RepConv3(x))))); out = (h + x) * (sigmoid(h) - 0.5).

RepConv3 is a 3x3 convolution whose kernel is a product of a 1x1 expansion, a 3x3
at twice the width and a 1x1 projection, plus a 1x1 shortcut. Only the last
factors carry biases, so the product is exactly one 3x3 convolution (zero padding
included): the kernel is formed from the factors at every forward, in training
too. The gradients are those of the over-parameterised branch, the compute that
of one plain 3x3 convolution.
"""
import torch
import torch.nn.functional as F
from torch import nn

from srx4.models.base import BicubicResidual, SRModel, zero_init


class RepConv3(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int = 2):
        super().__init__()
        mid_in, mid_out = cin * expand, cout * expand
        self.expand = nn.Parameter(torch.empty(mid_in, cin))            # 1x1, no bias
        self.core = nn.Parameter(torch.empty(mid_out, mid_in, 3, 3))    # 3x3, no bias
        self.project = nn.Parameter(torch.empty(cout, mid_out))         # 1x1
        self.shortcut = nn.Parameter(torch.empty(cout, cin))            # 1x1
        self.bias = nn.Parameter(torch.zeros(cout))
        for weight in (self.expand, self.core, self.project, self.shortcut):
            nn.init.kaiming_uniform_(weight.view(weight.shape[0], -1), a=5 ** 0.5)   # as nn.Conv2d does

    def kernel(self) -> torch.Tensor:
        """The one (cout, cin, 3, 3) kernel the factors make."""
        k = torch.einsum("ob,bayx,ai->oiyx", self.project, self.core, self.expand)
        return k + F.pad(self.shortcut[:, :, None, None], (1, 1, 1, 1))

    def forward(self, x):
        return F.conv2d(x, self.kernel().to(x.dtype), self.bias.to(x.dtype), padding=1)

    @torch.no_grad()
    def inference_form(self) -> nn.Conv2d:
        """The plain 3x3 convolution this is (predict.py's form: no kernel product per call)."""
        conv = nn.Conv2d(self.expand.shape[1], self.bias.shape[0], 3, padding=1)
        conv.weight.copy_(self.kernel())
        conv.bias.copy_(self.bias)
        return conv


class SPAB(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.c1, self.c2, self.c3 = RepConv3(channels, channels), RepConv3(channels, channels), RepConv3(channels, channels)
        self.act = nn.SiLU()

    def forward(self, x):
        h = self.c3(self.act(self.c2(self.act(self.c1(x)))))
        return (h + x) * (torch.sigmoid(h) - 0.5)


class SPAN(SRModel):
    """Args: scale 2, 3 or 4; num_blocks SPAB blocks (6); channels (48); bicubic_residual."""
    name = "span"
    demo_preset = {"num_blocks": 4, "channels": 32}
    train_flags = ("num_blocks", "channels", "bicubic_residual")

    def __init__(self, scale: int = 4, num_blocks: int = 6, channels: int = 48, bicubic_residual: bool = True):
        super().__init__(scale)
        if num_blocks < 1:
            raise ValueError("SPAN needs at least one block")
        self.remember(num_blocks=num_blocks, channels=channels, bicubic_residual=bicubic_residual)
        self.head = RepConv3(3, channels)
        self.blocks = nn.ModuleList(SPAB(channels) for _ in range(num_blocks))
        self.body_tail = RepConv3(channels, channels)
        self.merge = nn.Conv2d(4 * channels, channels, 1)
        self.upsample = nn.Sequential(nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        self.bicubic = BicubicResidual(scale) if bicubic_residual else None
        if bicubic_residual:
            zero_init(self.upsample[0])
        # head 1, 3 per block, body tail 1, upsampling conv 1, bicubic 2
        self.receptive_radius = 1 + 3 * num_blocks + 1 + 1 + (2 if bicubic_residual else 0)
        self.bytes_per_lr_pixel = channels * 4 * 24 + 3 * scale * scale * 4 * 2

    def checkpoint_blocks(self):
        return list(self.blocks)

    def inference_parameters(self):
        reps = [m for m in self.modules() if isinstance(m, RepConv3)]
        trained = sum(p.numel() for m in reps for p in m.parameters())
        folded = sum(m.bias.numel() * (m.expand.shape[1] * 9 + 1) for m in reps)
        return super().inference_parameters() - trained + folded

    def forward(self, lr):                          # lr: (N, 3, H, W) in [0, 1]
        head = self.head(lr)                        # (N, C, H, W)
        x = first = head
        for k, block in enumerate(self.blocks):
            x = block(x)
            first = x if k == 0 else first
        body = self.body_tail(x)
        feat = self.merge(torch.cat([head, first, x, body], dim=1))   # (N, 4C, H, W) -> (N, C, H, W)
        sr = self.upsample(feat)                    # (N, 3, sH, sW)
        return self.bicubic(sr, lr) if self.bicubic is not None else sr
