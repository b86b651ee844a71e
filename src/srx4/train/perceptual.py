"""The perceptual loss of `--loss l1+vgg`: L1 on pixels + w x L1 between VGG19 features of
SR and HR (conv5_4 before its ReLU, the layer ESRGAN compares), w = --vgg-weight.

The VGG19 is torchvision's architecture with ImageNet weights read from a file
(`--vgg-weights FILE`, torchvision's own vgg19-dcbb9e9d.pth, e.g. from its cache
~/.cache/torch/hub/checkpoints on a machine with internet, or a Kaggle dataset): nothing
is downloaded. Inputs in [0, 1] RGB are normalised as torchvision's ImageNet weights
expect; the features are computed in fp32 even under autocast. The network is frozen
and not part of the model: it is neither trained nor saved.

It trades PSNR for sharper textures: a leaderboard scored on PSNR wants --loss l1.

    criterion = VggLoss("vgg19-dcbb9e9d.pth", weight=0.1).to(device)
    loss = criterion(sr, hr)           # (N, 3, H, W) float in [0, 1] -> scalar
"""
from pathlib import Path

import torch
import torch.nn.functional as F

from srx4.core.errors import FlagError

CONV5_4 = 35                       # torchvision vgg19.features[:35] ends with conv5_4, before its ReLU
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"


def default_vgg_file() -> Path:
    """torchvision's own cached copy, where a machine with internet once fetched it."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def vgg19_features(path) -> torch.nn.Sequential:
    """VGG19's layers up to conv5_4 (pre-activation), with the weights in `path` (a state dict
    of torchvision's vgg19, or of its `features`); one line naming the file when unusable."""
    from torchvision.models import vgg19
    path = Path(path) if path else default_vgg_file()
    if not path.is_file():
        raise FlagError(f"--loss l1+vgg needs VGG19 ImageNet weights: {path} not found; pass --vgg-weights FILE "
                        f"(torchvision's {TORCHVISION_FILE}: copy it from ~/.cache/torch/hub/checkpoints of a "
                        f"machine with internet, or attach it as a Kaggle dataset)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise FlagError(f"--vgg-weights {path}: not a readable state dict ({type(err).__name__})") from None
    net = vgg19(weights=None)
    state = {k if k.startswith(("features.", "classifier.")) else f"features.{k}": v for k, v in state.items()}
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        net.features.load_state_dict(features)
    except RuntimeError as err:
        raise FlagError(f"--vgg-weights {path}: not VGG19's weights ({str(err).splitlines()[0][:120]})") from None
    return net.features[:CONV5_4]


class VggLoss(torch.nn.Module):
    """L1(sr, hr) + weight x L1(vgg(sr), vgg(hr)); sr, hr (N, 3, H, W) in [0, 1]."""

    def __init__(self, path, weight: float = 0.1):
        super().__init__()
        self.features = vgg19_features(path).eval().requires_grad_(False)
        self.weight = weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):          # always in eval mode (no dropout or BN here, but say so)
        return super().train(False)

    def forward(self, sr, hr):
        pixel = F.l1_loss(sr, hr)
        with torch.autocast(sr.device.type, enabled=False):
            f_sr = self.features((sr.float() - self.mean) / self.std)            # (N, 512, H/16, W/16)
            with torch.no_grad():
                f_hr = self.features((hr.float() - self.mean) / self.std)
            perceptual = F.l1_loss(f_sr, f_hr)
        return pixel + self.weight * perceptual
