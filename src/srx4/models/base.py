"""What every model here declares, so tiling, memory estimates, the demo and
checkpointing need no per-name tables.

A model is an `SRModel` (an nn.Module) that takes LR (N, 3, H, W) in [0, 1] and
returns SR (N, 3, s*H, s*W), unclamped in training (predict.py clamps), and has:

    name                  class attribute: its key in model.json ("srresnet", ...)
    demo_preset           class attribute: constructor options for the demo / a CPU ladder rung
    options_from_flags()  classmethod: constructor options from train.py's flags
    scale                 the upscaling factor
    receptive_radius      LR pixels of context one output pixel depends on: tiles overlap by it
    size_multiple         input sides must be a multiple of this (1 for convolutions)
    bytes_per_lr_pixel    peak fp32 activation bytes per LR pixel of one image at inference
    config()              the plain dict saved as model.json; build_model(config) rebuilds it
    checkpoint_blocks()   the repeated blocks activation checkpointing wraps
    inference_parameters()  parameters of the inference form (fewer where weights are re-parameterised)

`ARCHS` in srx4.models lists the classes. What inference reads of any runnable
model (an SRModel, an ONNX Runtime session, an ensemble) is its `spec`: one
`ModelSpec`.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.utils.checkpoint
from torch import nn

from srx4.image.resize import BicubicUpscale


@dataclass(frozen=True)
class ModelSpec:
    """What tiling, precision and memory choices need to know of a model, in one place."""
    scale: int
    receptive_radius: float         # LR px of context per output px: tiles overlap by it
    bytes_per_lr_pixel: int         # peak activation bytes per LR pixel of one image
    size_multiple: int = 1          # input sides padded / tiled to a multiple of this
    supports_half: bool = True      # runs in fp16 (spandrel's transformers do not)
    supports_bfloat16: bool = True
    channels_last: bool = False     # wants channels-last inputs (its inference form, prepare_model)
    runs_on: Optional[str] = None   # the device it really runs on when not its inputs' (ONNX Runtime)


class SRModel(nn.Module):
    name = ""
    demo_preset: dict = {}
    train_flags: tuple = ()     # train.py flags that are constructor options of the same name
    size_multiple = 1
    supports_half = True
    supports_bfloat16 = True
    channels_last = False       # set by srx4.predict.inference.prepare_model

    def __init__(self, scale: int):
        super().__init__()
        self.scale = int(scale)
        self.receptive_radius = 2.0
        self.bytes_per_lr_pixel = 4 * 16 * 8
        self._config = {"name": self.name, "scale": self.scale}

    def remember(self, **options):
        """Record constructor options for config()."""
        self._config.update(options)

    def config(self) -> dict:
        return dict(self._config)

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.scale, float(self.receptive_radius), int(self.bytes_per_lr_pixel), int(self.size_multiple),
                         bool(self.supports_half), bool(self.supports_bfloat16), bool(self.channels_last))

    def checkpoint_blocks(self) -> list:
        return []

    def inference_parameters(self) -> int:
        """Parameters of the form that runs at inference (re-parameterised models have fewer)."""
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def options_from_flags(cls, flags: dict) -> dict:
        """Constructor options from train.py's flags: those in `train_flags`, 0 meaning
        "the model's own default"."""
        unset = lambda v: v is None or v == "" or (type(v) is int and v == 0)  # noqa: E731 (False is a value)
        return {k: flags[k] for k in cls.train_flags if k in flags and not unset(flags[k])}

    @classmethod
    def from_config(cls, config: dict, state: dict = None):
        options = {k: v for k, v in config.items() if k != "name"}
        return cls(**options)


class BicubicResidual(nn.Module):
    """Adds the MATLAB-bicubic upsampled input to a network's output, in fp32 even
    under bf16/fp16 autocast (the baseline must stay exact), so a network whose last
    layer starts at zero starts at bicubic."""

    def __init__(self, scale: int):
        super().__init__()
        self.up = BicubicUpscale(scale)

    def forward(self, sr, lr):                                  # sr (N, 3, sH, sW), lr (N, 3, H, W)
        with torch.autocast(lr.device.type, enabled=False):
            return sr.float() + self.up(lr.float())


def zero_init(conv: nn.Conv2d):
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def pixel_shuffle_stages(channels: int, scale: int, activation=None) -> nn.Sequential:
    """conv3x3 + PixelShuffle stages: two x2 for x4, one x2 for x2, one x3 for x3,
    each followed by `activation()` when given."""
    if scale in (2, 4):
        factors = [2] * (scale // 2)
    elif scale == 3:
        factors = [3]
    else:
        raise ValueError(f"scale must be 2, 3 or 4, not {scale}")
    layers = []
    for f in factors:
        layers += [nn.Conv2d(channels, channels * f * f, 3, padding=1), nn.PixelShuffle(f)]
        if activation is not None:
            layers.append(activation())
    return nn.Sequential(*layers)


class ResidualTrunk(SRModel):
    """The SRResNet / EDSR shape: head -> blocks -> body tail, plus the head's output ->
    upsampling -> tail (+ bicubic(LR)). Subclasses build the layers and call `assemble`."""

    def assemble(self, head, blocks, body_tail, upsample, tail, bicubic_residual: bool, radius: int):
        """`radius`: LR pixels the layers reach without the bicubic residual."""
        self.head, self.blocks, self.body_tail, self.upsample, self.tail = head, blocks, body_tail, upsample, tail
        self.bicubic = BicubicResidual(self.scale) if bicubic_residual else None
        if bicubic_residual:        # the learned part starts at zero: an untrained net is bicubic
            zero_init(tail)
        self.receptive_radius = radius + (2 if bicubic_residual else 0)
        self.bytes_per_lr_pixel = tail.in_channels * 4 * 60          # ~60 maps of C channels at peak

    def checkpoint_blocks(self):
        return list(self.blocks)

    def forward(self, lr):                      # lr: (N, 3, H, W) in [0, 1]
        feat = self.head(lr)                    # (N, C, H, W)
        feat = feat + self.body_tail(self.blocks(feat))
        sr = self.tail(self.upsample(feat))     # (N, 3, sH, sW)
        return self.bicubic(sr, lr) if self.bicubic is not None else sr


def _checkpointed_forward(block, *args):
    if block.training and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(type(block).forward, block, *args, use_reentrant=False)
    return type(block).forward(block, *args)


def checkpoint_activations(model: SRModel) -> int:
    """Make each of `model.checkpoint_blocks()` recompute its activations in the backward
    pass instead of keeping them (training only; eval and copies of the model run as
    before). BatchNorm blocks then update their running statistics twice per step,
    which the pre-validation refresh (--bn-refresh) makes moot. Returns the blocks."""
    import types
    blocks = model.checkpoint_blocks()
    for block in blocks:
        block.forward = types.MethodType(_checkpointed_forward, block)
    return len(blocks)
