"""The model zoo: one short file per architecture, each an `SRModel` (see base.py for
the interface every model declares).

    srresnet  SRResNet-16 with BatchNorm: the default          (srresnet.py)
    srcnn     SRCNN, the baseline; bicubic, the floor           (srcnn.py)
    edsr      EDSR-baseline: no BatchNorm, residual scaling     (edsr.py)
    span      SPAN-style efficient model (NTIRE 2024 winner)    (span.py)
    spandrel  a foreign model file (SwinIR, HAT, DAT, ...)      (foreign.py)

`build_model(config, state)` rebuilds any of them from the dict saved as model.json.
"""
from torch import nn

from srx4.models.base import SRModel
from srx4.models.edsr import EDSR
from srx4.models.foreign import ForeignError, ForeignModel, load_foreign
from srx4.models.span import SPAN
from srx4.models.srcnn import SRCNN, Bicubic
from srx4.models.srresnet import SRResNet

ARCHS = {cls.name: cls for cls in (SRResNet, SRCNN, EDSR, SPAN, Bicubic, ForeignModel)}
TRAINABLE = ["srresnet", "srcnn", "edsr", "span"]

__all__ = ["ARCHS", "TRAINABLE", "SRModel", "SRResNet", "SRCNN", "EDSR", "SPAN", "Bicubic", "ForeignModel",
           "ForeignError", "load_foreign", "build_model", "model_config_from_flags", "count_parameters"]


def build_model(config: dict, state: dict = None) -> nn.Module:
    """A model from its model.json dict, e.g. {"name": "srresnet", "scale": 4, ...};
    foreign models also need their weights (`state`)."""
    name = config.get("name")
    if name not in ARCHS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(ARCHS)}")
    return ARCHS[name].from_config(config, state)


def model_config_from_flags(flags: dict) -> dict:
    """The model.json of what train.py's flags ask for (flags["model"], ["scale"], ...)."""
    cls = ARCHS[flags["model"]]
    return cls(scale=flags["scale"], **cls.options_from_flags(flags)).config()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
