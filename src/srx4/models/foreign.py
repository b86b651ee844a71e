"""Models from the field, through spandrel (the architecture detector chaiNNer uses):
SwinIR, HAT, DAT, SPAN, RealESRGAN, OmniSR, ... from their released .pth /
.safetensors files, wrapped so they train, tile and predict as the models here do.

    model = load_foreign("4x_SwinIR_light.pth")      # an SRModel; model.config() -> model.json
    model = ForeignModel.from_config(config, state)  # again from weights saved by train.py

Nothing is downloaded: the file is the user's. spandrel is optional
(requirements-extras.txt); only foreign files need it. Inputs are padded
(reflect) to the architecture's size requirements and the output cropped back.
"""
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from srx4.core.errors import UserError
from srx4.models.base import SRModel

INSTALL = "pip install spandrel (in requirements-extras.txt; on Kaggle without internet, attach its wheel)"
FOREIGN_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class ForeignError(UserError, ValueError):
    """A one-line reason a file cannot be used as a foreign model."""


def _spandrel(source: str):
    try:
        import spandrel
    except ImportError:
        raise ForeignError(f"{source}: not weights of this repo; models of other projects need spandrel: "
                           f"{INSTALL}") from None
    return spandrel


def describe_state(state: dict) -> str:
    """A short account of a state dict for error messages."""
    keys = list(state)
    shown = ", ".join(repr(k) for k in keys[:3])
    return f"{len(keys)} tensors, keys like {shown}" if keys else "no tensors"


def descriptor_from_state(state: dict, source: str):
    """spandrel's ImageModelDescriptor for a state dict, or ForeignError in one line."""
    spandrel = _spandrel(source)
    state = spandrel.canonicalize_state_dict(dict(state))
    try:
        with warnings.catch_warnings():     # architectures' own deprecation warnings (torch.meshgrid ...)
            warnings.simplefilter("ignore")
            descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ForeignError(f"{source}: spandrel {spandrel.__version__} knows no architecture with these weights "
                           f"({describe_state(state)})") from None
    except Exception as err:     # a known architecture whose weights do not fit it
        raise ForeignError(f"{source}: spandrel could not build a model from it "
                           f"({err.__class__.__name__}: {str(err).splitlines()[0][:160]})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose not in ("SR", "FaceSR"):
        raise ForeignError(f"{source}: a {descriptor.architecture.name} model for {descriptor.purpose}, "
                           f"not single-image super-resolution")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ForeignError(f"{source}: a {descriptor.architecture.name} model with {descriptor.input_channels} -> "
                           f"{descriptor.output_channels} channels; RGB -> RGB is needed")
    return descriptor


def read_state(path) -> dict:
    """The tensors of a .pth/.pt/.ckpt/.safetensors file as spandrel reads them."""
    path = Path(path)
    spandrel = _spandrel(str(path))
    try:
        return spandrel.ModelLoader().load_state_dict_from_file(str(path))
    except Exception as err:
        raise ForeignError(f"{path}: not a readable model file ({err.__class__.__name__}: "
                           f"{str(err).splitlines()[0][:160]})") from None


class ForeignModel(SRModel):
    """A spandrel model as an SRModel. Its config names the architecture; its weights
    (keys "net.*") hold everything else, so from_config needs them."""
    name = "spandrel"

    def __init__(self, descriptor, source: str = ""):
        super().__init__(descriptor.scale)
        self.net = descriptor.model
        req = descriptor.size_requirements
        self.size_multiple, self.size_minimum, self.square = req.multiple_of, req.minimum, req.square
        self.supports_half, self.supports_bfloat16 = descriptor.supports_half, descriptor.supports_bfloat16
        self.remember(architecture=descriptor.architecture.id, tags=list(descriptor.tags),
                      parameters=sum(p.numel() for p in self.net.parameters()), source=Path(source).name)
        # Unknown in general: windowed attention reaches further than its window over the
        # layers. 32 LR px of overlap is what tiled SwinIR / HAT inference commonly uses.
        self.receptive_radius = 32.0
        self.bytes_per_lr_pixel = 200_000        # transformer-sized: tiles are chosen small, OOM halves them

    def checkpoint_blocks(self):
        """The children of the largest repeated container (SwinIR's layers, ESRGAN's body, ...)."""
        containers = [m for m in self.net.modules() if isinstance(m, (torch.nn.ModuleList, torch.nn.Sequential))
                      and len(m) > 1]
        if not containers:
            return []
        size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return list(max(containers, key=size))

    @classmethod
    def from_config(cls, config: dict, state: dict = None):
        if state is None:
            raise ForeignError(f"a {config.get('architecture')} model needs its weights to be rebuilt")
        inner = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        descriptor = descriptor_from_state(inner, config.get("source") or "weights")
        if descriptor.architecture.id != config.get("architecture"):
            raise ForeignError(f"weights are a {descriptor.architecture.id} model, model.json says "
                               f"{config.get('architecture')}")
        model = cls(descriptor, config.get("source", ""))
        model._config["source"] = config.get("source", "")
        return model

    def forward(self, lr):                          # lr: (N, 3, H, W) in [0, 1]
        h, w = lr.shape[2:]
        m = self.size_multiple
        th, tw = max(-(-h // m) * m, self.size_minimum), max(-(-w // m) * m, self.size_minimum)
        if self.square:
            th = tw = max(th, tw)
        if (th, tw) != (h, w):
            mode = "reflect" if th - h < h and tw - w < w else "replicate"
            lr = F.pad(lr, (0, tw - w, 0, th - h), mode=mode)
        sr = self.net(lr)                           # (N, 3, s th, s tw)
        return sr[:, :, :h * self.scale, :w * self.scale]


def load_foreign(path) -> ForeignModel:
    """A foreign model file -> ForeignModel (eval mode), or ForeignError in one line."""
    path = Path(path)
    if not path.is_file():
        raise ForeignError(f"{path}: no such file")
    model = ForeignModel(descriptor_from_state(read_state(path), str(path)), str(path))
    return model.eval()
